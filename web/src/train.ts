import { useAdapter } from "./adapter-card.ts";
import { edgeApi } from "./api.ts";
import type { DemoUser } from "./config.ts";
import { byId, describe, onSubmit, showVerdict } from "./dom.ts";
import { state } from "./state.ts";

/** How often a training job's status is asked for while it runs. */
const JOB_POLL_MS = 2000;

/** The training form: queues a job with the pasted text and follows it until a worker is done. */
export function setUpTraining(): void {
  const verdict = byId("train-status");
  onSubmit("train-form", async () => {
    const user = state.user;
    const text = byId<HTMLTextAreaElement>("train-text").value.trim();
    const steps = Number(byId<HTMLInputElement>("train-steps").value) || undefined;
    if (!user) return showVerdict(verdict, false, "choose a user first");
    if (!text) return showVerdict(verdict, false, "paste some text to train on first");
    try {
      const paragraphs = text
        .split(/\n\s*\n/)
        .map((p) => p.trim())
        .filter(Boolean);
      const job = await edgeApi(user.token).createJob(
        state.modelId,
        user.id,
        { kind: "text", texts: paragraphs },
        steps === undefined ? {} : { steps },
      );
      showVerdict(
        verdict,
        "pending",
        `job ${job.id}: ${job.status} — start a worker: npm run worker -- --api ${location.origin} --token <worker token>`,
      );
      await followJob(job.id, user, verdict);
    } catch (error) {
      showVerdict(verdict, false, `job refused: ${describe(error)}`);
    }
  });
}

async function followJob(id: string, user: DemoUser, verdict: HTMLElement): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    const job = await edgeApi(user.token).getJob(id);
    if (job.status === "succeeded") {
      showVerdict(
        verdict,
        true,
        `job ${id} succeeded: adapter version ${job.version} — now generating with it above`,
      );
      if (state.user?.id === user.id) await useAdapter();
      return;
    }
    if (job.status === "failed") {
      showVerdict(
        verdict,
        false,
        `job ${id} failed after ${job.attempts} attempt(s): ${job.error ?? "no reason given"}`,
      );
      return;
    }
    showVerdict(
      verdict,
      "pending",
      `job ${id}: ${job.status} (attempt ${job.attempts}, updated ${job.updated})${job.status === "queued" ? " — waiting for a worker (npm run worker)" : ""}`,
    );
  }
}
