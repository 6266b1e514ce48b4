// Headless Chromium as every end-to-end test here starts it: Debian's package (or
// $CHROMIUM), no sandbox (the tests run as root), and nothing that reaches for a network.

import { chromium } from "playwright-core";

export const DEADLINE = 20_000; // every wait in these tests has this deadline (ms)

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: DEADLINE,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
