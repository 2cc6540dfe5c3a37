// The browser end-to-end tests' harness: a fresh database on the test
// PostgreSQL server, the real floe-api binary (with its in-process worker and
// the offline agents) as a child process that tests may kill -9 and start
// again, and headless Chromium driven by playwright-core.
//
// Needs DATABASE_URL (a server the tests may create databases on; scripts/test
// provides one), a built front end (frontend/dist) and target/debug/floe-api
// (FLOE_API_BIN overrides it). Chromium: CHROMIUM_PATH, else chromium,
// chromium-browser or google-chrome on PATH.

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, closeSync, copyFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root. */
export const ROOT = resolve(here, "../..");
/** Where screenshots and server logs go (kept after the run). */
export const ARTIFACTS = resolve(process.env.FLOE_E2E_ARTIFACTS ?? join(ROOT, "target/e2e"));
/** Where current screenshots for the README go, when FLOE_E2E_DOCS=1. */
const DOCS_IMAGES = join(ROOT, "docs/images");
/** The operator token the test servers require. */
export const OPERATOR_TOKEN = "e2e-operator-token";
/** How long to wait for anything to appear. */
export const PATIENCE = 30_000;

mkdirSync(ARTIFACTS, { recursive: true });

function serverUrl() {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL must name a PostgreSQL server the tests may create databases on");
  return url;
}

/** A new, empty database on the test server; floe-api migrates it. */
export function createDatabase() {
  const name = `floe_e2e_${randomBytes(8).toString("hex")}`;
  psql(serverUrl(), `CREATE DATABASE ${name}`);
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

/** Removes a database made by {@link createDatabase}. */
export function dropDatabase(db) {
  psql(serverUrl(), `DROP DATABASE IF EXISTS ${db.name} WITH (FORCE)`);
}

/** Runs one statement; returns its rows as arrays of strings. */
export function psql(url, sql) {
  const out = execFileSync("psql", [url, "-X", "-v", "ON_ERROR_STOP=1", "-qAt", "-F", "\t", "-c", sql], {
    encoding: "utf8",
  });
  return out
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => line.split("\t"));
}

/** A free TCP port on the loopback interface. */
export async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const apiBin = () => process.env.FLOE_API_BIN ?? join(ROOT, "target/debug/floe-api");

/**
 * floe-api --with-worker on `port` over `db`, ready when /readyz says so.
 * `kill()` sends SIGKILL (a crash), `stop()` SIGTERM (a clean shutdown).
 */
export async function startApi(db, port, { name = "api" } = {}) {
  if (!existsSync(apiBin())) throw new Error(`${apiBin()} not found: run cargo build first`);
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    // The offline agents, the test's own settings: nothing from the caller's FLOE__*.
    if (key.startsWith("FLOE__")) delete env[key];
  }
  Object.assign(env, {
    DATABASE_URL: db.url,
    FLOE__API__OPERATOR_TOKEN: OPERATOR_TOKEN,
    FLOE__HTTP__STATIC_DIR: join(ROOT, "frontend/dist"),
    RUST_LOG: process.env.RUST_LOG ?? "info",
  });
  const log = openSync(join(ARTIFACTS, `${name}.log`), "a");
  const child = spawn(apiBin(), ["--with-worker", "--listen", `127.0.0.1:${port}`], {
    env,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  const exited = new Promise((ok) => child.once("exit", (code, signal) => ok({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    const early = await Promise.race([exited, sleep(100).then(() => null)]);
    if (early) throw new Error(`floe-api exited (${JSON.stringify(early)}); see ${join(ARTIFACTS, `${name}.log`)}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("floe-api did not become ready");
    }
  }
  return {
    url,
    pid: child.pid,
    async kill() {
      child.kill("SIGKILL");
      return exited;
    },
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

/** Headless Chromium. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

function chromiumPath() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    } catch {
      // try the next one
    }
  }
  throw new Error("Chromium not found: apt-get install chromium (scripts/setup test does), or set CHROMIUM_PATH");
}

/**
 * A page with its console errors and failed requests collected, so a test can
 * show them when it fails.
 */
export async function newPage(browser, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.setDefaultTimeout(PATIENCE);
  page.problems = [];
  page.on("console", (m) => m.type() === "error" && page.problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  return page;
}

/**
 * Saves a full-page screenshot as a test artifact; with FLOE_E2E_DOCS=1 also
 * as docs/images/<name>.png for the README.
 */
export async function screenshot(page, name) {
  const file = join(ARTIFACTS, `${name}.png`);
  // From the top, so sticky headers sit where a person sees them.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.FLOE_E2E_DOCS === "1") {
    mkdirSync(DOCS_IMAGES, { recursive: true });
    copyFileSync(file, join(DOCS_IMAGES, `${name}.png`));
  }
}

export function sleep(ms) {
  return new Promise((ok) => setTimeout(ok, ms));
}
