// Helpers for driving the chat page.

/** Signs in with a display name and waits for the assistant's first message. */
export async function signIn(page, name) {
  await page.getByTestId("signin-input").fill(name);
  await page.getByTestId("signin-button").click();
  await page.locator('[data-testid="message"][data-role="assistant"]').first().waitFor();
}

/** How many assistant messages the page shows. */
export function assistantCount(page) {
  return page.locator('[data-testid="message"][data-role="assistant"]').count();
}

/** Types `text`, sends it, and waits for the assistant's next message. */
export async function say(page, text) {
  const before = await assistantCount(page);
  await page.getByTestId("composer-input").fill(text);
  await page.getByTestId("send-button").click();
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="message"][data-role="assistant"]').length > n,
    before,
  );
}

/** The conversation as the page shows it: role, sequence number and text. */
export function conversation(page) {
  return page.locator('[data-testid="message"]').evaluateAll((nodes) =>
    nodes.map((m) => ({
      role: m.getAttribute("data-role"),
      seq: m.hasAttribute("data-seq") ? Number(m.getAttribute("data-seq")) : null,
      text: [...m.querySelectorAll('[data-testid="message-text"]')].map((p) => p.textContent).join("\n"),
    })),
  );
}
