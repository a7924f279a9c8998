"""`grounding_detect`: an image with a caption → one grounding sample: the caption's noun phrases located by an
open-vocabulary detector (OWLv2 / OWL-ViT / Grounding DINO through transformers), boxes above a score threshold
after per-phrase NMS; as in the GLM-4.1V report, only images with at least two boxes are kept.

`messages` holds phrase → box turns (where is "…"? → every box of that phrase, 0–1000) and box → phrase turns
(what is at [x1,y1,x2,y2]? → the phrase); `boxes` holds the same boxes in pixels with their phrase and score.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image
from pydantic import Field, field_validator

from pipelines import columns as C
from pipelines.formats import box_to_1000, build_answer, format_box
from pipelines.imaging import to_rgb
from pipelines.operator import Drop, Generator, OperatorConfig
from synth.grounding.phrases import STOP_HEADS, WORDNET_DIR, lexicon, noun_phrases

PHRASES = pa.field("phrases", pa.list_(pa.string()))

REC_QUESTIONS = ('Where is the {phrase} in this image? Answer with bounding boxes.', 'Locate every {phrase}.',
                 'Find "{phrase}" in the picture.')
REG_QUESTIONS = ("What is in the region {box}?", "Name the object at {box}.", "What does the box {box} show?")


class ModelMissing(ValueError):
    """The detector named in the config is neither a local folder nor in the local Hugging Face cache."""


def check_model(model: str) -> str:
    """`model` if it can be loaded without a download, else ModelMissing naming it and how to provide it."""
    if Path(model).is_dir():
        if not (Path(model) / "config.json").exists():
            raise ModelMissing(f"detector model folder {model} has no config.json (save one with "
                               "model.save_pretrained and processor.save_pretrained)")
        return model
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id either
        cached = None
    if not isinstance(cached, str):
        raise ModelMissing(
            f"detector model {model!r} is neither a local folder nor in the Hugging Face cache; download it where a "
            f"network is allowed (`hf download {model}`) or set `model:` to a folder with config.json and the "
            "processor files")
    return model


class GroundingDetectConfig(OperatorConfig):
    model: str = Field("google/owlv2-base-patch16-ensemble",
                       description="Local folder or hub name of a transformers zero-shot detector (OWLv2, OWL-ViT, "
                                   "Grounding DINO); it must be available offline.")
    device: str = Field("cpu", description="torch device.")
    score_threshold: float = Field(0.3, ge=0, le=1, description="Boxes scoring below this are left out.")
    nms_iou: float = Field(0.5, gt=0, le=1, description="Boxes of one phrase overlapping more than this are merged "
                                                        "(torchvision NMS).")
    min_boxes: int = Field(2, ge=1, description="Images with fewer valid boxes are dropped (fewer_than_2_boxes).")
    max_boxes_per_phrase: int = Field(10, ge=1, description="Best-scoring boxes kept per phrase.")
    min_box_side: float = Field(4.0, ge=0, description="Boxes thinner than this (pixels) are not valid.")
    max_box_area: float = Field(0.95, gt=0, le=1, description="Boxes covering more of the image than this are not "
                                                              "valid (the whole picture is not an object).")
    max_phrases: int = Field(8, ge=1, description="Noun phrases sent to the detector per caption at most.")
    max_phrase_words: int = Field(5, ge=1, description="Longer phrases keep their last words.")
    stop_heads: tuple[str, ...] = Field(tuple(sorted(STOP_HEADS)), description="Phrase heads that name the picture, "
                                                                              "not a thing in it.")
    wordnet_dir: str = Field(WORDNET_DIR, description="WordNet 3.0 database (Debian's wordnet-base) for the tagger.")
    reg_turns: int = Field(2, ge=0, description="Box → phrase turns per sample.")
    seed: int = Field(0, description="Picks templates and boxes for the turns (with the row key).")
    rec_questions: tuple[str, ...] = Field(REC_QUESTIONS, min_length=1, description="Templates with {phrase}.")
    reg_questions: tuple[str, ...] = Field(REG_QUESTIONS, min_length=1, description="Templates with {box}.")

    @field_validator("model")
    @classmethod
    def _available(cls, value: str) -> str:
        return check_model(value)


class GroundingDetect(Generator):
    name = "grounding_detect"
    Config = GroundingDetectConfig
    reads = ("image", "text")
    adds = (C.WIDTH, C.HEIGHT, C.BOXES, C.MESSAGES, PHRASES)

    def setup(self) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        path = check_model(self.config.model)
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(path).to(self.config.device).eval()
        self.kind = self.model.config.model_type  # owlv2 | owlvit | grounding-dino | mm-grounding-dino
        self.lex = lexicon(self.config.wordnet_dir)

    def phrases(self, caption: str) -> list[str]:
        found = noun_phrases(caption, self.lex, frozenset(self.config.stop_heads), self.config.max_phrase_words)
        return found[: self.config.max_phrases]

    def detect(self, image: Image.Image, phrases: list[str]) -> list[dict[str, Any]]:
        """Boxes (pixels), scores and phrases above the threshold, after NMS per phrase (no autograd: inference only,
        scoped to this call so a worker that also trains is unaffected)."""
        import torch

        with torch.inference_mode():
            return self._detect(image, phrases)

    def _detect(self, image: Image.Image, phrases: list[str]) -> list[dict[str, Any]]:
        import torch
        from torchvision.ops import batched_nms

        c = self.config
        size = [(image.height, image.width)]
        if self.kind.startswith("owl"):
            inputs = self.processor(text=[phrases], images=image, return_tensors="pt", padding=True, truncation=True)
            outputs = self.model(**inputs.to(c.device))
            result = self.processor.post_process_grounded_object_detection(
                outputs, threshold=c.score_threshold, target_sizes=size, text_labels=[phrases])[0]
            labels = [int(v) for v in result["labels"]]
        else:
            result, labels = self._grounding_dino(image, phrases)
        boxes = result["boxes"].float().cpu()
        scores = result["scores"].float().cpu()
        keep_idx = [i for i, lab in enumerate(labels) if lab >= 0]
        if not keep_idx:
            return []
        boxes, scores = boxes[keep_idx], scores[keep_idx]
        label_t = torch.tensor([labels[i] for i in keep_idx])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.height)
        kept = batched_nms(boxes, scores, label_t, c.nms_iou).tolist()
        out: list[dict[str, Any]] = []
        per_phrase: dict[int, int] = {}
        area = float(image.width * image.height)
        for i in kept:  # batched_nms returns indices by decreasing score
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            if min(x2 - x1, y2 - y1) < c.min_box_side or (x2 - x1) * (y2 - y1) > c.max_box_area * area:
                continue
            lab = int(label_t[i])
            if per_phrase.get(lab, 0) >= c.max_boxes_per_phrase:
                continue
            per_phrase[lab] = per_phrase.get(lab, 0) + 1
            out.append({"box": [round(v, 2) for v in (x1, y1, x2, y2)], "label": phrases[lab],
                        "score": round(float(scores[i]), 4)})
        return out

    def _grounding_dino(self, image: Image.Image, phrases: list[str]) -> tuple[dict[str, Any], list[int]]:
        """Grounding DINO scores boxes against prompt tokens: a box's score for a phrase is the best sigmoid over
        the phrase's tokens (found by character offsets in the dot-separated prompt); its label the best phrase."""
        import torch
        from torchvision.ops import box_convert

        prompt = ". ".join(phrases) + "."
        inputs = self.processor(images=image, text=prompt, return_tensors="pt")
        outputs = self.model(**inputs.to(self.config.device))
        offsets = self.processor.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
        probs = outputs.logits[0].sigmoid().float().cpu()  # [queries, text positions]
        columns, pos = [], 0
        for phrase in phrases:
            start = prompt.index(phrase, pos)
            pos = start + len(phrase)
            tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= pos and i < probs.shape[1]]
            columns.append(probs[:, tokens].max(dim=1).values if tokens else torch.zeros(probs.shape[0]))
        scores, labels = torch.stack(columns, dim=1).max(dim=1)
        boxes = box_convert(outputs.pred_boxes[0].float().cpu(), "cxcywh", "xyxy")
        boxes = boxes * torch.tensor([image.width, image.height, image.width, image.height])
        keep = scores >= self.config.score_threshold
        return {"boxes": boxes[keep], "scores": scores[keep]}, [int(v) for v in labels[keep]]

    def generate(self, row: dict[str, Any]):
        caption = row.get("text") or ""
        phrases = self.phrases(caption)
        if not phrases:
            raise Drop("no_noun_phrases")
        if not row.get("image"):
            raise Drop("no_image")
        with Image.open(io.BytesIO(row["image"])) as im:
            im.load()
            image = to_rgb(im)
        boxes = self.detect(image, phrases)
        if len(boxes) < self.config.min_boxes:
            raise Drop(f"fewer_than_{self.config.min_boxes}_boxes:{len(boxes)}")
        messages = self.messages(boxes, image.width, image.height, random.Random(f"{self.config.seed}:{row['key']}"))
        return [{"boxes": boxes, "messages": messages, "phrases": phrases, "width": image.width,
                 "height": image.height}]

    def messages(self, boxes: list[dict[str, Any]], width: int, height: int, rng: random.Random) -> list[dict[str, Any]]:
        c = self.config
        by_phrase: dict[str, list[list[float]]] = {}
        for b in boxes:
            by_phrase.setdefault(b["label"], []).append(b["box"])
        turns: list[tuple[str, str]] = []
        for phrase, found in by_phrase.items():
            norm = [format_box(box_to_1000(b, width, height)) for b in found]
            answer = norm[0] if len(norm) == 1 else "[" + ",".join(norm) + "]"
            turns.append((rng.choice(c.rec_questions).format(phrase=phrase), build_answer("", boxed=answer)))
        for b in rng.sample(boxes, min(c.reg_turns, len(boxes))):
            norm = format_box(box_to_1000(b["box"], width, height))
            turns.append((rng.choice(c.reg_questions).format(box=norm), build_answer("", boxed=b["label"])))
        out: list[dict[str, Any]] = []
        for i, (question, answer) in enumerate(turns):
            out += [C.user(question, images=1 if i == 0 else 0), C.assistant(answer)]
        return out
