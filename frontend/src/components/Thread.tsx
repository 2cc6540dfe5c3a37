import {
  ComposerPrimitive,
  MessagePrimitive,
  ThreadPrimitive,
  useAuiState,
  type DataMessagePartProps,
  type TextMessagePartProps,
} from "@assistant-ui/react";
import type { DraftItem, EntryMeta, StreamDraft, Widget } from "../chat/connection";
import { useChat } from "./ChatContext";
import { formatDue } from "./InboxPanel";

/** The longest message the server takes (its default setting). */
const MAX_MESSAGE = 4000;

export function Thread() {
  const { state } = useChat();
  return (
    <ThreadPrimitive.Root className="thread">
      <ThreadPrimitive.Viewport
        className="viewport"
        data-testid="message-list"
        role="log"
        aria-label="Conversation"
        aria-live="polite"
        autoScroll
      >
        <ThreadPrimitive.Empty>
          <p className="muted empty">The assistant will say hello in a moment…</p>
        </ThreadPrimitive.Empty>
        <ThreadPrimitive.Messages>{renderMessage}</ThreadPrimitive.Messages>
        {state.typing && state.drafts.map((draft) => <DraftView key={draft.turn} draft={draft} />)}
        {state.typing && <TypingIndicator />}
      </ThreadPrimitive.Viewport>
      <Composer />
    </ThreadPrimitive.Root>
  );
}

// Module-level so ThreadPrimitive.Messages (memoised on its children) keeps it.
const renderMessage = () => <MessageView />;

const useMeta = () => useAuiState((s) => s.message.metadata.custom as unknown as EntryMeta);

function MessageView() {
  const role = useAuiState((s) => s.message.role);
  const meta = useMeta();
  const { state } = useChat();
  return (
    <MessagePrimitive.Root
      className={`msg msg-${role} msg-kind-${meta.kind} msg-${meta.status}`}
      role="article"
      aria-label={role === "user" ? "You" : meta.kind === "nudge" ? "Assistant (reminder)" : "Assistant"}
      data-testid="message"
      data-role={role}
      data-seq={meta.seq ?? undefined}
      data-kind={meta.kind}
      data-status={meta.status}
      data-client-id={meta.clientId ?? undefined}
    >
      <MessagePrimitive.Parts components={PARTS} />
      {meta.status === "pending" && (
        <span className="msg-note" data-testid="message-pending">
          {state.connection === "connected" || state.connection === "polling" ? "Sending…" : "Waiting for a connection…"}
        </span>
      )}
      {meta.status === "failed" && (
        <span className="msg-note msg-error" role="alert">
          Not sent: {meta.error}
        </span>
      )}
    </MessagePrimitive.Root>
  );
}

/**
 * A reply the assistant is still writing, as streamed so far (not a
 * `message`: it has no seq, and the stored message replaces it).
 */
function DraftView({ draft }: { draft: StreamDraft }) {
  return (
    <div
      className="msg msg-assistant msg-draft"
      role="article"
      aria-label="Assistant (writing)"
      aria-busy="true"
      data-testid="message-draft"
      data-role="assistant"
      data-turn={draft.turn}
    >
      <p className="bubble" data-testid="message-draft-text">
        {draft.text}
      </p>
    </div>
  );
}

function TextPart({ text }: TextMessagePartProps) {
  return (
    <p className="bubble" data-testid="message-text">
      {text}
    </p>
  );
}

/** Whether the person has written since this message (its widget is then spent). */
function useAnswered(): boolean {
  const { state } = useChat();
  const seq = useMeta().seq;
  if (state.completed) return true;
  if (seq === null) return false;
  return state.messages.some((m) => m.role === "user" && (m.seq === null || m.seq > seq));
}

function QuickReplies({ data }: DataMessagePartProps<Extract<Widget, { type: "quick_replies" }>>) {
  const { send } = useChat();
  const answered = useAnswered();
  const options: string[] = Array.isArray(data?.options) ? data.options : [];
  if (answered || options.length === 0) return null;
  return (
    <div className="widget quick-replies" role="group" aria-label="Quick replies">
      {options.map((option) => (
        <button key={option} type="button" className="chip" data-testid="quick-reply" onClick={() => send(option)}>
          {option}
        </button>
      ))}
    </div>
  );
}

function ItemConfirmation({ data }: DataMessagePartProps<Extract<Widget, { type: "item_confirmation" }>>) {
  const { send } = useChat();
  const answered = useAnswered();
  const items: DraftItem[] = Array.isArray(data?.items) ? data.items : [];
  return (
    <div className="widget confirm" data-testid="item-confirmation" role="group" aria-label="Items to confirm">
      {items.length > 0 ? (
        <ul className="confirm-list">
          {items.map((it, i) => (
            <li key={`${i}-${it.title}`} data-testid="confirm-item">
              <span className="inbox-title">{it.title}</span>
              <span className="inbox-meta">
                {it.due_date && <time dateTime={it.due_date}>{formatDue(it.due_date)}</time>}
                {(it.tags ?? []).map((t) => (
                  <span key={t} className="tag">
                    #{t}
                  </span>
                ))}
              </span>
            </li>
          ))}
        </ul>
      ) : (
        <p className="muted">Nothing to add.</p>
      )}
      {!answered && (
        <button type="button" className="button primary" data-testid="confirm-button" onClick={() => send("Looks good")}>
          Looks good
        </button>
      )}
    </div>
  );
}

const PARTS = {
  Text: TextPart,
  data: { by_name: { quick_replies: QuickReplies, item_confirmation: ItemConfirmation } },
};

function TypingIndicator() {
  return (
    <div className="typing" data-testid="typing-indicator" role="status" aria-label="The assistant is typing">
      <span className="typing-dots" aria-hidden="true">
        <span />
        <span />
        <span />
      </span>
      <span className="sr-only">The assistant is typing…</span>
    </div>
  );
}

function Composer() {
  const { state } = useChat();
  const placeholder = state.completed
    ? "Onboarding complete"
    : state.connection === "offline" || state.connection === "reconnecting"
      ? "Write a message (sent when you're back online)"
      : "Write a message…";
  return (
    <ComposerPrimitive.Root className="composer" aria-label="Send a message">
      <label htmlFor="composer-input" className="sr-only">
        Message
      </label>
      <ComposerPrimitive.Input
        id="composer-input"
        className="composer-input"
        data-testid="composer-input"
        placeholder={placeholder}
        maxLength={MAX_MESSAGE}
        rows={1}
        maxRows={6}
        submitMode="enter"
        autoFocus
      />
      <ComposerPrimitive.Send className="button primary" data-testid="send-button" aria-label="Send">
        Send
      </ComposerPrimitive.Send>
    </ComposerPrimitive.Root>
  );
}
