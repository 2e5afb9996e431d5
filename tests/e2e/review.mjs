// End-to-end check of the label review page in headless Chromium (driven by tests/test_review_browser.py).
// usage: node review.mjs URL SCREENSHOT.png
// Keys: k (keep), 1 (relabel to the 1st class), d (drop), u (undo the drop), s (skip).
// Prints one JSON line {faces, progress, given, external_requests, console_errors}; exit 1 on failure.
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node review.mjs URL SCREENSHOT.png");
  process.exit(2);
}
const result = { faces: [], progress: [], given: null, external_requests: [], console_errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const origin = new URL(url).origin;
  await context.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith(origin) || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
    result.external_requests.push(u);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console_errors.push(m.text()); });
  page.on("pageerror", (e) => result.console_errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  const faceId = page.locator("#face-id");
  const progress = page.locator("#progress");
  const waitFor = async (text) => page.waitForFunction(
    (t) => document.getElementById("progress").textContent.startsWith(t), text, { timeout: 10000 });
  await waitFor("0 /");
  await page.waitForFunction(() => document.getElementById("face").naturalWidth > 0, null, { timeout: 10000 });
  result.given = (await page.locator("#given").textContent()).trim();
  const steps = [["k", "1 /"], ["1", "2 /"], ["d", "3 /"], ["u", "2 /"], ["s", "2 /"]];
  for (const [key, expect] of steps) {
    result.faces.push((await faceId.textContent()).trim());
    const before = (await page.locator("#status").textContent()).trim();
    await page.keyboard.press(key);
    await waitFor(expect);
    await page.waitForFunction((b) => document.getElementById("status").textContent.trim() !== b, before,
                               { timeout: 10000 });
    result.progress.push((await progress.textContent()).trim());
  }
  await page.screenshot({ path: shot });
} catch (e) {
  failed = String(e);
} finally {
  await browser.close();
}
if (failed) result.error = failed;
console.log(JSON.stringify(result));
process.exit(failed ? 1 : 0);
