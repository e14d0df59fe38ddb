"""Prompt formats of instruction data: (instruction, input, output) -> (prompt, response).

The Stanford Alpaca prompt, a tokenizer's chat template, or a callable; one function,
:func:`format_example`, used by :mod:`skdlc._encoding`.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["ALPACA_PROMPT", "ALPACA_PROMPT_NO_INPUT", "TEMPLATES", "format_example"]

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
TEMPLATES = ("alpaca", "chat")

def format_example(
    instruction: str,
    input: str,  # noqa: A002 - the field's name in Alpaca data
    output: str,
    template: str | Callable = "alpaca",
    tokenizer: Any = None,
) -> tuple[str, str, bool]:
    """Prompt text, response text, and whether to append the EOS token.

    ``"alpaca"``: the Stanford Alpaca prompt (with or without the ``### Input:``
    block); the response is ``output`` followed by EOS, as in Alpaca fine-tuning.
    ``"chat"``: the tokenizer's chat template with one user turn (instruction, a blank
    line, then input) and one assistant turn; the response is everything the template
    puts after the generation prompt (the output and the end-of-turn marker).
    A callable ``template(instruction, input, output)`` returns ``(prompt, response)``
    (used as given, no EOS added) or ``(prompt, response, add_eos)``.
    """
    if callable(template):
        out = template(instruction, input, output)
        if len(out) == 3:
            return out[0], out[1], bool(out[2])
        prompt, response = out
        return prompt, response, False
    if template == "alpaca":
        if input:
            prompt = ALPACA_PROMPT.format(instruction=instruction, input=input)
        else:
            prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
        return prompt, output, True
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template='chat' needs a tokenizer with a chat template")
        user = f"{instruction}\n\n{input}" if input else instruction
        msgs = [{"role": "user", "content": user}]
        prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            msgs + [{"role": "assistant", "content": output}], tokenize=False
        )
        if not full.startswith(prompt):
            raise ValueError(
                "this tokenizer's chat template does not put the assistant turn right "
                "after the generation prompt; pass a callable template instead"
            )
        response = full[len(prompt):]
        if output and response.startswith(output):
            # keep the end-of-turn marker, drop the template's trailing newline
            response = output + response[len(output):].rstrip()
        return prompt, response, False
    raise ValueError(f"template must be one of {TEMPLATES} or a callable, got {template!r}")
