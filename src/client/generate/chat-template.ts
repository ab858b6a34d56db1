import { ClientError } from "../errors.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Default system prompt of a ChatML template, e.g. SmolLM2's "You are a helpful AI assistant named SmolLM, …". */
const DEFAULT_SYSTEM = /<\|im_start\|>system(?:\n|\\n)([^<]*?)<\|im_end\|>/;

/**
 * Gemma's turns: `<bos>`, then `<start_of_turn>{user|model}\n{content}<end_of_turn>\n` (content
 * trimmed); a system message opens the first user turn, followed by a blank line; a generation
 * prompt `<start_of_turn>model\n` ends it.
 */
function gemmaTemplate(
  bos: string,
): (messages: ChatMessage[], addGenerationPrompt?: boolean) => string {
  return (messages, addGenerationPrompt = true) => {
    const system = messages[0]?.role === "system" ? `${messages[0].content}\n\n` : "";
    let out = bos;
    for (const [i, m] of messages.slice(system ? 1 : 0).entries()) {
      const role = m.role === "assistant" ? "model" : m.role;
      out += `<start_of_turn>${role}\n${i === 0 ? system : ""}${m.content.trim()}<end_of_turn>\n`;
    }
    if (addGenerationPrompt) out += "<start_of_turn>model\n";
    return out;
  };
}

/**
 * Renders chat messages for a ChatML template (SmolLM2, Qwen and others): each message is
 * `<|im_start|>{role}\n{content}<|im_end|>\n`; a system message from the template is prepended
 * when the first message is not one; a generation prompt `<|im_start|>assistant\n` ends it.
 * Gemma's `<start_of_turn>` template is rendered too (`bosToken` starts it). Other templates are
 * refused with the template's start in the error.
 */
export function chatTemplate(
  template: string | undefined,
  bosToken = "<bos>",
): (messages: ChatMessage[], addGenerationPrompt?: boolean) => string {
  if (template?.includes("<start_of_turn>")) return gemmaTemplate(bosToken);
  if (template !== undefined && !template.includes("<|im_start|>")) {
    throw new ClientError(
      "unsupported_chat_template",
      `only ChatML and Gemma chat templates are supported; this one starts ${JSON.stringify(template.slice(0, 80))}`,
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
