import { Tokenizer } from "@huggingface/tokenizers";
import { type ChatMessage, chatTemplate } from "./chat-template.ts";

export interface TextTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt?: boolean): string;
  /** Token ids that end generation: the config's eos token(s) and the template's end marker (ChatML's `<|im_end|>`, Gemma's `<end_of_turn>`). */
  readonly stopIds: ReadonlySet<number>;
  readonly padId: number;
}

/** A tokenizer from tokenizer.json + tokenizer_config.json (@huggingface/tokenizers, pure JS). */
export function loadTokenizer(
  tokenizerJson: unknown,
  config: Record<string, unknown>,
  eosTokenIds: readonly number[] = [],
): TextTokenizer {
  const tokenizer = new Tokenizer(tokenizerJson as object, config);
  const template = typeof config.chat_template === "string" ? config.chat_template : undefined;
  let render: ReturnType<typeof chatTemplate> | undefined;
  const stopIds = new Set(eosTokenIds);
  for (const name of [config.eos_token, "<|im_end|>", "<end_of_turn>"]) {
    const token =
      typeof name === "string" ? name : (name as { content?: string } | undefined)?.content;
    const id = token === undefined ? undefined : tokenizer.token_to_id(token);
    if (id !== undefined) stopIds.add(id);
  }
  const padName = typeof config.pad_token === "string" ? config.pad_token : undefined;
  const padId = (padName === undefined ? undefined : tokenizer.token_to_id(padName)) ?? 0;
  return {
    encode: (text, options) =>
      tokenizer.encode(text, { add_special_tokens: options?.addSpecialTokens ?? true }).ids,
    decode: (ids, options) =>
      tokenizer.decode(ids as number[], {
        skip_special_tokens: options?.skipSpecialTokens ?? true,
      }),
    applyChatTemplate: (messages, addGenerationPrompt) => {
      render ??= chatTemplate(
        template,
        typeof config.bos_token === "string" ? config.bos_token : undefined,
      );
      return render(messages, addGenerationPrompt);
    },
    stopIds,
    padId,
  };
}
