// The onboarding chat in headless Chromium against the real floe-api (with
// its worker and the offline agents) over a real PostgreSQL database.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  createDatabase,
  dropDatabase,
  freePort,
  launchBrowser,
  newPage,
  screenshot,
  startApi,
} from "./harness.mjs";
import { assistantCount, conversation, say, signIn } from "./chat.mjs";

describe("the onboarding chat", () => {
  let db;
  let api;
  let port;
  let browser;

  before(async () => {
    db = createDatabase();
    port = await freePort();
    api = await startApi(db, port, { name: "chat-api" });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await api?.stop();
    if (db) dropDatabase(db);
  });

  test("a new user completes the whole onboarding on a phone-sized screen", async () => {
    const page = await newPage(browser, { width: 390, height: 844 });
    await page.goto(api.url);
    await screenshot(page, "chat-signin");
    // By keyboard, finding the fields by their accessible labels.
    await page.getByLabel("What should we call you?").pressSequentially("Alex");
    await page.keyboard.press("Enter");
    await page.locator('[data-testid="message"][data-role="assistant"]').first().waitFor();

    // The assistant speaks first: the greeting arrives with no user message.
    const opening = await conversation(page);
    assert.equal(opening.filter((m) => m.role === "user").length, 0);
    assert.match(opening[0].text, /what's your name/i);
    assert.equal(await page.getByTestId("progress-bar").getAttribute("aria-valuenow"), "0");

    await page.getByLabel("Message", { exact: true }).pressSequentially("Hi, I'm Alex");
    await page.keyboard.press("Enter");
    await page.getByText("Nice to meet you, Alex").waitFor();
    await say(page, "I'm a product manager");
    await say(page, "Ship the new onboarding");

    // Mid-conversation reload: the same conversation comes back.
    const before = await conversation(page);
    await page.reload();
    await page.getByTestId("connection-state").and(page.locator('[data-state="connected"]')).waitFor();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length >= n, before.length);
    assert.deepEqual(await conversation(page), before, "reload restores every message, in order");
    const midway = Number(await page.getByTestId("progress-bar").getAttribute("aria-valuenow"));
    assert.ok(midway > 0 && midway < 100, `progress mid-way, got ${midway}`);

    // The work-pattern question offers quick replies: answer with one.
    await page.getByTestId("quick-reply").filter({ hasText: "Mornings" }).last().waitFor();
    const n = await assistantCount(page);
    await page.getByTestId("quick-reply").filter({ hasText: "Mornings" }).last().click();
    await page.waitForFunction(
      (k) => document.querySelectorAll('[data-testid="message"][data-role="assistant"]').length > k,
      n,
    );
    assert.ok((await conversation(page)).some((m) => m.role === "user" && m.text === "Mornings"));

    await say(page, "Notion and Linear");
    await say(page, "Too many meetings");
    await screenshot(page, "chat-conversation");

    // The brain dump: the assistant lists the items for confirmation.
    await say(page, "Call the bank tomorrow\nFinish the report by friday #work");
    const confirm = page.getByTestId("item-confirmation").last();
    await confirm.waitFor();
    assert.deepEqual(await confirm.getByTestId("confirm-item").count(), 2);
    const k = await assistantCount(page);
    await page.getByTestId("confirm-button").last().click();
    await page.waitForFunction(
      (j) => document.querySelectorAll('[data-testid="message"][data-role="assistant"]').length > j,
      k,
    );

    await page.getByTestId("completed-banner").waitFor();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="progress-bar"]')?.getAttribute("aria-valuenow") === "100",
    );
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="inbox-item"]').length === 2);
    const inbox = await page.getByTestId("inbox-item").allTextContents();
    assert.ok(inbox.some((t) => t.includes("Call the bank")), inbox.join(" | "));
    assert.ok(inbox.some((t) => t.includes("Finish the report") && t.includes("#work")), inbox.join(" | "));
    await screenshot(page, "chat-completed");

    // Sequence numbers are gapless and unique: nothing lost, nothing twice.
    const done = await conversation(page);
    assert.deepEqual(
      done.map((m) => m.seq),
      done.map((_, i) => i + 1),
    );
    // GET /api/session answers 401 before sign-in, by design; nothing else may fail.
    assert.deepEqual(
      page.problems.filter((p) => !p.includes("status of 401")),
      [],
    );
    await page.context().close();
  });

  test("killing the API and starting it again: the page reconnects and nothing is lost", async () => {
    const page = await newPage(browser, { width: 1024, height: 800 });
    await page.goto(api.url);
    await signIn(page, "Sam");
    await say(page, "I'm Sam");

    await api.kill();
    await page.getByTestId("connection-state").and(page.locator('[data-state="connected"]')).waitFor({ state: "detached" });

    // Sent while the server is down: kept in the outbox, delivered once later.
    await page.getByTestId("composer-input").fill("I'm a designer");
    await page.getByTestId("send-button").click();
    await page.getByTestId("message-pending").waitFor();
    await screenshot(page, "chat-reconnecting");

    api = await startApi(db, port, { name: "chat-api-restarted" });
    await page.getByTestId("connection-state").and(page.locator('[data-state="connected"]')).waitFor();
    await page.getByTestId("message-pending").waitFor({ state: "detached" });
    // The queued answer is answered by the next question (the goals one).
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid="message"][data-role="assistant"]')].some((m) =>
        /make progress on/i.test(m.textContent ?? ""),
      ),
    );

    const afterRestart = await conversation(page);
    assert.equal(afterRestart.filter((m) => m.text === "I'm a designer").length, 1, "delivered exactly once");
    assert.deepEqual(
      afterRestart.map((m) => m.seq),
      afterRestart.map((_, i) => i + 1),
      "gapless, unique sequence numbers",
    );

    // A fresh page load agrees with what the live page shows.
    await page.reload();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="message"]').length >= n, afterRestart.length);
    assert.deepEqual(await conversation(page), afterRestart);
    await page.context().close();
  });
});
