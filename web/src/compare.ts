import type { GenerateOptions, PersonalModel, Prompt } from "../../src/client/index.ts";
import type { Adapter } from "../../src/format/index.ts";

/** One side of the comparison: where its text goes and how fast it was. */
export interface Side {
  label: string;
  adapter: Adapter | null;
  onText(text: string): void;
  onDone(stats: { tokens: number; ms: number }): void;
}

type Chunk = { token: number; text: string };

interface Run {
  side: Side;
  iterator: AsyncGenerator<Chunk>;
  tokens: number;
  ms: number;
  done: boolean;
}

/** One step of one side: awaits its next chunk (a `session.run`), shows it, times it. */
async function step(run: Run): Promise<void> {
  const t0 = performance.now();
  const next = await run.iterator.next();
  run.ms += performance.now() - t0;
  if (next.done) {
    run.done = true;
    run.side.onDone({ tokens: run.tokens, ms: run.ms });
    return;
  }
  if (next.value.token >= 0) run.tokens += 1;
  if (next.value.text) run.side.onText(next.value.text);
}

/**
 * Streams the same prompt through the base model and the personal model side by side on one
 * session. A generation keeps the R that was current when it started, so R is swapped right
 * before each side starts; steps then alternate, one `session.run` at a time.
 */
export async function compareSideBySide(
  model: PersonalModel,
  prompt: Prompt,
  sides: Side[],
  options: GenerateOptions,
): Promise<void> {
  const runs: Run[] = [];
  for (const side of sides) {
    model.setAdapter(side.adapter, side.label);
    const run: Run = {
      side,
      iterator: model.generate(prompt, options),
      tokens: 0,
      ms: 0,
      done: false,
    };
    runs.push(run);
    await step(run); // starts the generator: it leases the R just set, then prefills
  }
  while (runs.some((run) => !run.done)) {
    for (const run of runs) if (!run.done) await step(run);
  }
}
