// Drives the `resnet serve` web page in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium): the model list loads, uploading IMAGE through the file input shows
// EXPECTED as the top class with five ranked bars, and a file that is not an image shows the
// server's JSON error as a readable line. Run by scripts/browser-test.sh, which starts the server.
//
// Usage: node scripts/browser_test.mjs URL IMAGE EXPECTED
// Environment: PLAYWRIGHT_DIR  folder whose node_modules has playwright-core (required)
//              CHROMIUM        browser executable (default /usr/bin/chromium)
//              SCREENSHOT      where to save a PNG of the page after the upload (optional)
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const [url, image, expected] = process.argv.slice(2);
if (!url || !image || !expected || !process.env.PLAYWRIGHT_DIR) {
  console.error("usage: PLAYWRIGHT_DIR=DIR node scripts/browser_test.mjs URL IMAGE EXPECTED");
  process.exit(2);
}
const { chromium } = createRequire(resolve(process.env.PLAYWRIGHT_DIR, "package.json"))("playwright-core");

const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"}  ${what}`);
  if (!ok) failures.push(what);
}

// A fresh profile each run; the flags keep Chromium off the (closed) network and quiet.
const profile = mkdtempSync(join(tmpdir(), "resnet-browser-test-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 900, height: 800 },
});
const notAnImage = join(profile, "notes.txt");
writeFileSync(notAnImage, "this is text, not an image\n");
try {
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // Chromium logs every 4xx fetch as "Failed to load resource"; the error upload expects one.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
  });
  page.setDefaultTimeout(60_000);

  const response = await page.goto(url, { waitUntil: "load" });
  check(response && response.status() === 200, `GET ${url} answers 200 (got ${response && response.status()})`);
  check((await page.title()) === "resnet serve", "the page's title is 'resnet serve'");

  // The model list comes from GET /models; the first model is selected.
  await page.waitForFunction(() => document.querySelector("#model").value !== "");
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  check(models.length >= 1, `the model list is filled (${JSON.stringify(models)})`);

  // Upload through the file input, as a user choosing a file does.
  await page.setInputFiles("#file", image);
  await page.waitForSelector("body[data-state=done], body[data-state=error]");
  const errorText = await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent));
  check(errorText === "", `no error is shown after the upload${errorText ? ": " + errorText : ""}`);
  const rows = await page.$$eval("#results li", (lis) =>
    lis.map((li) => ({
      label: li.querySelector(".label").textContent,
      pct: li.querySelector(".pct").textContent,
      width: li.querySelector(".fill").style.width,
      probability: Number(li.dataset.probability),
    })),
  );
  console.log(rows.map((r) => `      ${r.pct.padStart(7)}  ${r.label}`).join("\n"));
  check(rows.length === 5, `five predictions are shown (got ${rows.length})`);
  check(rows.length > 0 && rows[0].label.includes(expected), `the top class is '${expected}' (got '${rows[0]?.label}')`);
  check(rows.every((r, i) => i === 0 || rows[i - 1].probability >= r.probability), "they are sorted by probability");
  check(
    rows.every((r) => r.probability >= 0 && r.probability <= 1 && /^(<0\.01|\d+(\.\d+)?)%$/.test(r.pct) && /%$/.test(r.width)),
    "each has a probability in [0, 1], a percentage and a bar",
  );
  const sum = rows.reduce((s, r) => s + r.probability, 0);
  check(sum <= 1.0001, `top-5 probabilities are softmax probabilities (sum ${sum.toFixed(4)} <= 1)`);
  const status = await page.textContent("#status");
  check(/\d+ ms/.test(status), `the status line shows the time taken ('${status}')`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  // A file that is not an image: the server's JSON error, readably, and no stale results.
  await page.setInputFiles("#file", notAnImage);
  await page.waitForSelector("body[data-state=error]");
  const shown = await page.$eval("#error", (e) => (e.hidden ? "" : e.textContent));
  console.log(`      error shown: ${shown}`);
  check(/^HTTP 4\d\d · \w+Exception: \S/.test(shown), "a non-image gets the server's 4xx JSON error as one readable line");
  check((await page.$$("#results li")).length === 0, "the previous results are cleared");

  check(pageErrors.length === 0, `no JavaScript errors on the page${pageErrors.length ? ": " + pageErrors.join(" | ") : ""}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

console.log(failures.length === 0 ? "browser test: all checks passed" : `browser test: ${failures.length} check(s) failed`);
process.exit(failures.length === 0 ? 0 : 1);
