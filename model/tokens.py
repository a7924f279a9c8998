"""GLM-4.1V's special tokens and chat template, shared by the tokenizer builder and the data encoder."""

from __future__ import annotations

# The answer-format tokens have one home, shared with synth/ and the verifiers.
from pipelines.formats import ANSWER_BEGIN, ANSWER_END, BOX_BEGIN, BOX_END, THINK_BEGIN, THINK_END  # noqa: F401

PAD = "<|endoftext|>"
EOS = "<|endoftext|>"
IMAGE = "<|image|>"
IMAGE_BEGIN = "<|begin_of_image|>"
IMAGE_END = "<|end_of_image|>"
VIDEO = "<|video|>"
VIDEO_BEGIN = "<|begin_of_video|>"
VIDEO_END = "<|end_of_video|>"
USER, ASSISTANT, SYSTEM, OBSERVATION = "<|user|>", "<|assistant|>", "<|system|>", "<|observation|>"
GMASK, SOP = "[gMASK]", "<sop>"

# Order fixes the ids 0..N-1 of a tokenizer trained here; real checkpoints bring their own ids.
SPECIAL_TOKENS: list[str] = [
    PAD, GMASK, SOP, IMAGE, VIDEO, IMAGE_BEGIN, IMAGE_END, VIDEO_BEGIN, VIDEO_END,
    SYSTEM, USER, ASSISTANT, OBSERVATION,
    THINK_BEGIN, THINK_END, ANSWER_BEGIN, ANSWER_END, BOX_BEGIN, BOX_END,
]

# GLM-4.1V's layout: "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>question<|assistant|>\n...".
CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for msg in messages %}"
    "{{ '<|' + msg['role'] + '|>\\n' }}"
    "{%- if msg['content'] is string %}{{ msg['content'] }}"
    "{%- else %}{%- for item in msg['content'] %}"
    "{%- if item['type'] == 'image' %}{{ '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{%- elif item['type'] == 'video' %}{{ '<|begin_of_video|><|video|><|end_of_video|>' }}"
    "{%- elif item['type'] == 'text' %}{{ item['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>\\n' }}{%- endif %}"
)
