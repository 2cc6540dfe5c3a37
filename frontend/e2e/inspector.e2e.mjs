// The workflow inspector (/inspect) in headless Chromium against the real
// floe-api over a real PostgreSQL database, beside a live chat page.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  OPERATOR_TOKEN,
  createDatabase,
  dropDatabase,
  freePort,
  launchBrowser,
  newPage,
  screenshot,
  startApi,
} from "./harness.mjs";
import { conversation, say, signIn } from "./chat.mjs";

describe("the workflow inspector", () => {
  let db;
  let api;
  let browser;

  before(async () => {
    db = createDatabase();
    api = await startApi(db, await freePort(), { name: "inspector-api" });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await api?.stop();
    if (db) dropDatabase(db);
  });

  /** Opens the inspector and signs in with the operator token. */
  async function openInspector(path = "/inspect") {
    const page = await newPage(browser, { width: 1280, height: 900 });
    await page.goto(`${api.url}${path}`);
    await page.getByTestId("token-input").fill(OPERATOR_TOKEN);
    await page.getByTestId("token-submit").click();
    return page;
  }

  test("a wrong operator token is refused with a clear message", async () => {
    const page = await newPage(browser);
    await page.goto(`${api.url}/inspect`);
    await page.getByTestId("token-input").fill("not-the-token");
    await page.getByTestId("token-submit").click();
    await page.getByTestId("token-error").waitFor();
    assert.equal(await page.getByTestId("workflow-row").count(), 0);
    await page.context().close();
  });

  test("lists the chat's workflow, shows its history, and a signal it sends reaches the chat", async () => {
    // A person starts onboarding in the chat.
    const chat = await newPage(browser, { width: 390, height: 844 });
    await chat.goto(api.url);
    await signIn(chat, "Jordan");
    const { user_id: userId } = await chat.evaluate(async () => (await fetch("/api/session")).json());
    const key = `onboarding/${userId}`;

    // The list finds it by key, kind and "waiting on a person".
    const inspector = await openInspector();
    await inspector.getByTestId("filter-search").fill(userId);
    const row = inspector.locator(`[data-testid="workflow-row"][data-key="${key}"]`);
    await row.waitFor();
    await inspector.getByTestId("filter-waiting").check();
    await row.waitFor();
    assert.ok(Number(await inspector.getByTestId("count-total").textContent()) >= 1);
    await screenshot(inspector, "inspector-list");
    await inspector.getByTestId("filter-status").selectOption("completed");
    await row.waitFor({ state: "detached" });
    await inspector.getByTestId("filter-status").selectOption("");
    await row.waitFor();

    // Its page: kind, key, state and the history so far.
    await row.click();
    await inspector.getByTestId("wf-key").filter({ hasText: key }).waitFor();
    assert.equal((await inspector.getByTestId("wf-kind").textContent()).trim(), "onboarding");
    assert.match(await inspector.getByTestId("wf-state").textContent(), /greeting/);
    await inspector.locator('[data-testid="history-row"][data-event="start"]').first().waitFor();
    await inspector.locator('[data-testid="history-row"][data-name="user_connected"]').first().waitFor();
    await inspector.locator('[data-testid="activity-row"][data-name="agent.turn"]').first().waitFor();

    // A payload that is not JSON is refused before anything is sent.
    const signals = () => inspector.locator('[data-testid="history-row"][data-name="user_message"]').count();
    await inspector.getByTestId("signal-name").fill("user_message");
    await inspector.getByTestId("signal-payload").fill("{ not json");
    await inspector.getByTestId("signal-send").click();
    await inspector.getByTestId("signal-error").waitFor();
    assert.equal(await signals(), 0);

    // A real signal: the workflow answers, the chat shows the answer live,
    // and the open inspector page shows the new history without a reload.
    await inspector.getByTestId("signal-payload").fill(JSON.stringify({ content: "My name is Jordan" }));
    await inspector.getByTestId("signal-send").click();
    await inspector.getByTestId("signal-result").waitFor();
    await chat.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid="message"][data-role="assistant"]')].some((m) =>
        /Nice to meet you, Jordan/.test(m.textContent ?? ""),
      ),
    );
    await inspector.locator('[data-testid="history-row"][data-name="user_message"]').first().waitFor();
    await inspector.getByTestId("wf-state").filter({ hasText: "discovery" }).waitFor();

    // Queries answer from the stored state.
    await inspector.getByTestId("query-name").fill("get_progress");
    await inspector.getByTestId("query-run").click();
    await inspector.getByTestId("query-result").filter({ hasText: "discovery" }).waitFor();
    await screenshot(inspector, "inspector-workflow");

    // The chat carries on from there as usual.
    await say(chat, "I'm a nurse");
    assert.ok((await conversation(chat)).some((m) => m.role === "user" && m.text === "I'm a nurse"));
    await chat.context().close();
    await inspector.context().close();
  });

  test("cancels a workflow with a reason", async () => {
    // A second person, through the chat API alone.
    const signedIn = await fetch(`${api.url}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ display_name: "Casey" }),
    }).then((r) => r.json());
    const started = await fetch(`${api.url}/api/workflow/start`, {
      method: "POST",
      headers: { authorization: `Bearer ${signedIn.token}` },
    });
    assert.equal(started.status, 202);
    const { run_id: id } = await started.json();

    const page = await openInspector(`/inspect/workflows/${id}`);
    await page.getByTestId("wf-status").waitFor();
    page.once("dialog", (d) => d.accept());
    await page.getByTestId("cancel-reason").fill("left the company");
    await page.getByTestId("cancel-button").click();
    await page.getByTestId("wf-status").filter({ hasText: "cancelled" }).waitFor();
    await page.locator('[data-testid="history-row"][data-event="cancel"]').first().waitFor();
    assert.match(await page.getByTestId("history-table").textContent(), /left the company/);
    await page.context().close();
  });

  test("the dashboard draws its charts", async () => {
    const page = await openInspector("/inspect/dashboard");
    for (const chart of ["chart-workflows", "chart-queue", "chart-throughput", "chart-llm"]) {
      await page.getByTestId(chart).waitFor();
    }
    // recharts renders SVG: the workflows chart has drawn at least one bar.
    await page.locator('[data-testid="chart-workflows"] svg .recharts-rectangle').first().waitFor();
    // The numbers behind it: the chat's workflow waits in discovery, the
    // cancelled one stopped in greeting; the hour saw that one cancellation.
    const census = await page
      .getByTestId("chart-workflows")
      .locator("table tbody tr")
      .evaluateAll((rows) => rows.map((r) => [...r.children].map((c) => c.textContent.trim())));
    // Columns: kind · state, running, waiting, completed, failed, cancelled, total.
    assert.deepEqual(census, [
      ["onboarding · discovery", "0", "1", "0", "0", "0", "1"],
      ["onboarding · greeting", "0", "0", "0", "0", "1", "1"],
    ]);
    assert.match(await page.getByTestId("chart-throughput").textContent(), /1 cancelled/);
    await screenshot(page, "inspector-dashboard");
    await page.context().close();
  });
});
