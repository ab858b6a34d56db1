import { describe, expect, it } from "vitest";
import { ClientError, chatTemplate, TextStream } from "../../../src/client/index.ts";

// SmolLM2-135M-Instruct's chat template (tokenizer_config.json).
const SMOLLM2 =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

describe("chat template", () => {
  it("renders SmolLM2's template with its default system prompt", () => {
    const render = chatTemplate(SMOLLM2);
    expect(render([{ role: "user", content: "Hi" }])).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(
      render(
        [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hi" },
        ],
        false,
      ),
    ).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  });

  it("renders Gemma's turns: system in the first user turn, assistant as model", () => {
    const render = chatTemplate("{{ bos_token }}{{ '<start_of_turn>' + role }}", "<bos>");
    expect(
      render([
        { role: "system", content: "Be brief." },
        { role: "user", content: " Hi " },
        { role: "assistant", content: "Hello." },
        { role: "user", content: "Bye" },
      ]),
    ).toBe(
      "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n" +
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
    );
    expect(render([{ role: "user", content: "x" }], false)).toBe(
      "<bos><start_of_turn>user\nx<end_of_turn>\n",
    );
  });

  it("refuses a template that is not ChatML", () => {
    expect(() => chatTemplate("{{ bos_token }}[INST] {{ m }} [/INST]")).toThrow(ClientError);
    expect(() => chatTemplate("{{ bos_token }}[INST]")).toThrow(/\[INST\]/);
  });
});

describe("text stream", () => {
  it("emits deltas and holds back an incomplete character", () => {
    const s = new TextStream();
    expect(s.push("Hel")).toBe("Hel");
    expect(s.push("Hello\uFFFD")).toBe("lo");
    expect(s.push("Hello é")).toBe(" é");
  });

  it("ends before a stop string, even one split across tokens", () => {
    const s = new TextStream(["\nUser:"]);
    const parts = ["Sure", "Sure.\n", "Sure.\nUs", "Sure.\nUser: next"].map((t) => s.push(t));
    expect(parts.join("")).toBe("Sure.");
    expect(s.done).toBe(true);
    expect(s.push("Sure.\nUser: next more", true)).toBe("");
  });

  it("flushes what it held back at the end", () => {
    const s = new TextStream(["STOP"]);
    expect(s.push("abcST")).toBe("ab");
    expect(s.push("abcST", true)).toBe("cST");
  });
});
