// End-to-end check of the demo page in headless Chromium (Debian's, driven by playwright-core).
// usage: node live.mjs URL VIDEO.y4m SCREENSHOT.png [seconds] [PHOTO for the upload form]
// Prints one JSON line {label, labels, fps, debug_crops, external_requests, console_errors}; exit 1 on failure.
import { chromium } from "playwright-core";

const [url, y4m, shot, secondsArg, photo] = process.argv.slice(2);
if (!url || !y4m || !shot) {
  console.error("usage: node live.mjs URL VIDEO.y4m SCREENSHOT.png [seconds]");
  process.exit(2);
}
const seconds = Number(secondsArg || 4);
const result = { label: null, labels: [], fps: null, debug_crops: 0, external_requests: [], console_errors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${y4m}`,
  ],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const origin = new URL(url).origin;
  // Every asset must come from this server: record and block anything else.
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
  await page.click("#cam-toggle");
  const tag = page.locator("#live-overlay .face-label").first();
  await tag.waitFor({ state: "visible", timeout: 30000 });
  result.label = (await tag.textContent()).trim();
  await page.waitForTimeout(seconds * 1000); // let the round-trip rate settle
  result.fps = parseFloat(await page.locator("#fps").textContent());
  result.labels = (await page.locator("#live-overlay .face-label").allTextContents()).map((s) => s.trim());
  await page.check("#debug-toggle");
  await page.locator("#debug-faces img").first().waitFor({ state: "visible", timeout: 10000 });
  result.debug_crops = await page.locator("#debug-faces img").count();
  if (photo) {
    await page.setInputFiles("#image-input", photo);
    await page.locator("#image-overlay .face-label").first().waitFor({ state: "visible", timeout: 30000 });
    result.upload_labels = (await page.locator("#image-overlay .face-label").allTextContents()).map((s) => s.trim());
  }
  await page.fill("#text-input", "What a wonderful surprise, I love it!");
  await page.click("#fuse-go");
  await page.locator("#fused-result .big, #fused-result .error").first().waitFor({ timeout: 60000 });
  result.fused = (await page.locator("#fused-result").textContent()).trim().slice(0, 200);
  // The OpenAPI docs render from local assets too (Swagger UI 5, OpenAPI 3.1).
  const docs = await context.newPage();
  await docs.goto(new URL("/docs", url).href, { waitUntil: "load" });
  await docs.locator(".opblock").first().waitFor({ state: "visible", timeout: 20000 });
  result.docs_operations = await docs.locator(".opblock").count();
  await docs.close();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  failed = e;
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages.length) await pages[0].screenshot({ path: shot });
  } catch (_) { /* best effort */ }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
if (failed) {
  console.error(`e2e failed: ${failed.message}`);
  process.exit(1);
}
