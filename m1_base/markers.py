"""The thinking markers: the strings the m1 models write around a thinking trace, and the scorer and the reports
read back.  This module is their one home; the presets (:mod:`m1_models.settings`), the scorer
(:mod:`m1_tasks.scoring`), the tiny model's training text and the reports take them from here.

A forced response reads ``THINK_START + thinking + ANSWER_MARKER + answer`` (``OVERFLOW_MARKER`` instead of
``ANSWER_MARKER`` when the thinking budget ran out); see ``docs/budget-forcing.md``.

Standard library only, nothing imported.
"""

from __future__ import annotations

#: Qwen's chat-turn delimiters, which the m1 models also use inside the assistant turn
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

#: the start of the thinking phase: the s1 preset appends this ...
THINK_MARKER = IM_START + "think"
#: ... the m1 preset this (m1's ``think_str``)
THINK_START = THINK_MARKER + "\n"
#: the start of the answer (both presets' ``thinking_end``, m1's ``start_answer_str``); the scorer scores the text
#: from its last occurrence on, the marker included
ANSWER_MARKER = IM_START + "answer"
#: appended after ``ANSWER_MARKER`` when the thinking budget ran out (s1: ``thinking_end + "\nFinal Answer:"``)
FINAL_ANSWER_SUFFIX = "\nFinal Answer:"
#: the m1 preset's ``thinking_end_overflow`` (m1's ``start_overthink_answer_str``)
OVERFLOW_MARKER = ANSWER_MARKER + FINAL_ANSWER_SUFFIX
#: what ends a thinking round under the m1 preset (the s1 preset: ``IM_START`` only)
THINKING_STOPS = (IM_START, IM_END)
