import type { Progress, StepStatus } from "../chat/connection";
import { useChat } from "./ChatContext";

const LABELS: Record<string, string> = {
  greeting: "Greeting",
  discovery: "Discovery",
  brain_dump: "Brain dump",
  completed: "Done",
  done: "Done",
};

const DEFAULT_STEPS: Progress["steps"] = [
  { name: "greeting", status: "current" },
  { name: "discovery", status: "upcoming" },
  { name: "brain_dump", status: "upcoming" },
  { name: "completed", status: "upcoming" },
];

const label = (name: string) => LABELS[name] ?? name.replace(/_/g, " ");

const MARK: Record<StepStatus, string> = { done: "done", current: "in progress", upcoming: "upcoming" };

export function ProgressBar() {
  const { state } = useChat();
  const steps = state.progress?.steps?.length ? state.progress.steps : DEFAULT_STEPS;
  const percent = Math.max(0, Math.min(100, Math.round(state.progress?.percent ?? 0)));
  const current = state.progress?.current_step ?? "greeting";
  return (
    <section className="progress" aria-label="Onboarding progress">
      <div
        className="progress-track"
        data-testid="progress-bar"
        role="progressbar"
        aria-label="Onboarding progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={`${percent}% — ${label(current)}`}
        data-step={current}
      >
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <ol className="steps">
        {steps.map((s) => (
          <li
            key={s.name}
            className={`step step-${s.status}`}
            data-testid="progress-step"
            data-step={s.name}
            data-status={s.status}
            aria-current={s.status === "current" ? "step" : undefined}
          >
            <span className="step-dot" aria-hidden="true" />
            {label(s.name)}
            <span className="sr-only"> ({MARK[s.status] ?? s.status})</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
