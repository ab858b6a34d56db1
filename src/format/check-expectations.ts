import { fail } from "./errors.ts";
import { show } from "./show.ts";
import type { Adapter, AdapterExpectations } from "./types.ts";

/** Checks 36–40: the adapter against what the model says. */
export function checkExpectations(a: Adapter, expect: AdapterExpectations): void {
  const pairs = [
    ["model_mismatch", "model", a.model, expect.model],
    ["factors_mismatch", "factors", a.factors, expect.factors],
    ["rank_mismatch", "rank", a.rank, expect.rank],
    ["modules_mismatch", "modules", a.modules, expect.modules],
  ] as const;
  for (const [code, key, got, want] of pairs) {
    if (want !== undefined && got !== want) {
      fail(code, `${key} ${show(got)} does not match the model's ${show(want)}`, {
        value: got,
        expected: want,
      });
    }
  }
  if (expect.hidden !== undefined && a.head !== undefined && a.head.hidden !== expect.hidden) {
    fail(
      "hidden_mismatch",
      `head hidden size ${a.head.hidden} does not match the model's ${expect.hidden}`,
      {
        value: a.head.hidden,
        expected: expect.hidden,
      },
    );
  }
}
