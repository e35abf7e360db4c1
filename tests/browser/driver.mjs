// A headless chromium that a Python test drives, one JSON command per line on stdin, one JSON
// answer per line on stdout: the test keeps every assertion (and the AWS side) in Python.
//
//   node tests/browser/driver.mjs     (PLAYWRIGHT_CORE_DIR: where playwright-core is installed,
//                                      CHROMIUM: the browser executable, default /usr/bin/chromium)
//
// Commands: goto {url} | fill {selector, value} | submit {selector} | text {selector} |
// wait_text {selector, pattern, timeout_ms} | cookies | screenshot {path} | errors (the console
// errors since the last call) | close.
// Every command has a timeout; the whole driver exits after MAX_LIFETIME_MS whatever happens.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import path from "node:path";

const MAX_LIFETIME_MS = 300_000;
const STEP_TIMEOUT_MS = 15_000;
setTimeout(() => process.exit(3), MAX_LIFETIME_MS).unref();

const require = createRequire(path.join(process.env.PLAYWRIGHT_CORE_DIR, "node_modules") + "/");
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT_MS);
const errors = []; // console errors (a CSP violation is one) and uncaught exceptions
page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
page.on("pageerror", (error) => errors.push(String(error)));

const commands = {
  async goto({ url }) {
    const response = await page.goto(url);
    return { status: response.status(), url: page.url() };
  },
  async fill({ selector, value }) { await page.fill(selector, value); },
  async submit({ selector }) {
    const [response] = await Promise.all([page.waitForNavigation(), page.click(selector)]);
    return { status: response.status(), url: page.url() };
  },
  async text({ selector }) { return (await page.textContent(selector)).trim(); },
  async wait_text({ selector, pattern, timeout_ms }) {
    await page.waitForFunction(
      ([s, p]) => [...document.querySelectorAll(s)].some((n) => new RegExp(p).test(n.textContent)),
      [selector, pattern], { timeout: timeout_ms || STEP_TIMEOUT_MS, polling: 250 });
    const texts = await page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
    return texts.find((t) => new RegExp(pattern).test(t));
  },
  async cookies() { return context.cookies(); },
  async screenshot({ path: file }) { await page.screenshot({ path: file, fullPage: true }); },
  async errors() { return errors.splice(0); }, // and forget them
  async close() { await browser.close(); process.exit(0); },
};

for await (const line of createInterface({ input: process.stdin })) {
  const { op, ...args } = JSON.parse(line);
  try {
    const result = await commands[op](args);
    process.stdout.write(JSON.stringify({ ok: true, result: result ?? null }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error).slice(0, 2000) }) + "\n");
  }
}
await browser.close();
