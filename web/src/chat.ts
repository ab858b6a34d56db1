import type { FetchedAdapter } from "../../src/client/index.ts";
import { compareSideBySide } from "./compare.ts";
import { byId, describe, onSubmit } from "./dom.ts";
import { state, status } from "./state.ts";

/** The prompt form: base model and personal model, side by side. */
export function setUpChat(): void {
  const button = byId<HTMLButtonElement>("generate");
  onSubmit("chat-form", () => generate(button));
}

async function generate(button: HTMLButtonElement): Promise<void> {
  const model = state.model;
  if (!model) return;
  button.disabled = true;
  const text = byId<HTMLInputElement>("prompt").value;
  const maxTokens = Number(byId<HTMLInputElement>("max-tokens").value) || 40;
  const prompt = model.manifest.tokenizer?.chat_template
    ? [{ role: "user" as const, content: text }]
    : text;
  const outs = [
    { out: byId("base-out"), rate: byId("base-rate") },
    { out: byId("personal-out"), rate: byId("personal-rate") },
  ];
  status.last = [];
  for (const { out, rate } of outs) {
    out.textContent = "";
    out.dataset.state = "running";
    rate.textContent = "";
  }
  const side = (i: number, label: string, adapter: FetchedAdapter["adapter"] | null) => {
    const view = outs[i] as (typeof outs)[number];
    return {
      label,
      adapter,
      onText: (t: string) => {
        view.out.textContent += t;
      },
      onDone: ({ tokens, ms }: { tokens: number; ms: number }) => {
        view.out.dataset.state = "done";
        status.last[i] = { label, text: view.out.textContent ?? "", tokens };
        view.rate.textContent = `${tokens} tokens, ${((tokens * 1000) / Math.max(ms, 1)).toFixed(1)} tokens/s`;
      },
    };
  };
  try {
    await compareSideBySide(
      model,
      prompt,
      [
        side(0, "zeros", null),
        side(1, state.user?.id ?? "adapter", state.adapter?.adapter ?? null),
      ],
      { maxTokens },
    );
    status.generations += 1;
  } catch (error) {
    for (const { out } of outs) {
      out.dataset.state = "error";
      out.textContent += `\n[generation failed: ${describe(error)}]`;
    }
  } finally {
    button.disabled = false;
  }
}
