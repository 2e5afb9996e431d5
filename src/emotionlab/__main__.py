"""`python -m emotionlab` = the `emotionlab` command."""
from .cli import main

if __name__ == "__main__":
    main()
