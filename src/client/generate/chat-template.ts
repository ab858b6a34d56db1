import { ClientError } from "../errors.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Default system prompt of a ChatML template, e.g. SmolLM2's "You are a helpful AI assistant named SmolLM, …". */
const DEFAULT_SYSTEM = /<\|im_start\|>system(?:\n|\\n)([^<]*?)<\|im_end\|>/;

/**
 * Renders chat messages for a ChatML template (SmolLM2, Qwen and others): each message is
 * `<|im_start|>{role}\n{content}<|im_end|>\n`; a system message from the template is prepended
 * when the first message is not one; a generation prompt `<|im_start|>assistant\n` ends it.
 * Templates that are not ChatML are refused with the template's start in the error.
 */
export function chatTemplate(
  template: string | undefined,
): (messages: ChatMessage[], addGenerationPrompt?: boolean) => string {
  if (template !== undefined && !template.includes("<|im_start|>")) {
    throw new ClientError(
      "unsupported_chat_template",
      `only ChatML chat templates are supported; this one starts ${JSON.stringify(template.slice(0, 80))}`,
    );
  }
  const match = template === undefined ? null : DEFAULT_SYSTEM.exec(template);
  const defaultSystem = match?.[1]?.replace(/\\n/g, "\n");
  return (messages, addGenerationPrompt = true) => {
    let out = "";
    if (defaultSystem !== undefined && messages[0]?.role !== "system") {
      out += `<|im_start|>system\n${defaultSystem}<|im_end|>\n`;
    }
    for (const m of messages) out += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
    if (addGenerationPrompt) out += "<|im_start|>assistant\n";
    return out;
  };
}
