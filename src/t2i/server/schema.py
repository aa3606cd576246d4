"""The request and response bodies of the API; FastAPI turns them into the OpenAPI schema at /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**32 - 1


class GenerateRequest(BaseModel):
    """What to generate. Omitted settings take the model's defaults; limits are in GET /api/info."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(description="what the images should show")
    negative_prompt: str = Field("", description="what they should not show (replaces the unconditional input)")
    steps: int | None = Field(None, description="denoising steps (default: the model's)")
    guidance: float | None = Field(None, description="classifier-free guidance scale (default: the model's)")
    seed: int | None = Field(None, description=f"seed of the first image, 0 to {MAX_SEED}; image k uses seed + k "
                             "(default: random)")
    sampler: str | None = Field(None, description="one of the model's samplers (default: the model's)")
    width: int | None = Field(None, description="image width in pixels (default: the model's size)")
    height: int | None = Field(None, description="image height in pixels (default: the model's size)")
    num_images: int = Field(1, description="images to generate")


class Settings(BaseModel):
    """The settings a job runs with, every default filled in."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    seed: int
    sampler: str | None  # None for a model without a choice of sampler
    width: int
    height: int
    num_images: int


class ImageInfo(BaseModel):
    url: str = Field(description="the PNG, with its parameters in a 'parameters' text chunk")
    seed: int
    parameters: str = Field(description="the AUTOMATIC1111-style parameters text, as embedded in the PNG")


class ImageData(ImageInfo):
    png_base64: str = Field(description="the PNG itself, base64-encoded")


class JobUrls(BaseModel):
    status: str
    events: str
    cancel: str


class JobView(BaseModel):
    id: str = Field(description="opaque job id")
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    position: int | None = Field(description="jobs ahead of this one while queued (0: next)")
    step: int = Field(description="denoising steps done")
    total: int = Field(description="denoising steps in all")
    seconds: float | None = Field(description="running time so far, or in all")
    error: str | None = Field(description="why the job failed or was cancelled")
    settings: Settings
    images: list[ImageInfo]
    urls: JobUrls


class GenerateResult(JobView):
    images: list[ImageData]  # type: ignore[assignment]


class ErrorView(BaseModel):
    error: str


class Limits(BaseModel):
    max_width: int
    max_height: int
    max_pixels: int
    max_steps: int
    max_images: int
    max_guidance: float
    max_prompt_chars: int
    max_body_bytes: int
    queue_size: int
    job_timeout_s: float


class Info(BaseModel):
    t2i_version: str
    variant: str
    image_size: int = Field(description="the size the model was trained at (pixels)")
    sizes: list[int] = Field(description="sizes the page offers for width and height")
    samplers: list[str]
    defaults: dict[str, Any]
    limits: Limits
    token_required: bool


class Health(BaseModel):
    status: Literal["ok"]
    queued: int
    running: bool
    queue_size: int
    jobs_kept: int
    submitted: int
    refused: int
    done: int
    failed: int
    cancelled: int


def errors(*codes: int) -> dict:
    return {code: {"model": ErrorView} for code in codes}


# 401/403/413/415 come from the guard, for any /api route.
GUARD_ERRORS = (401, 403)
BODY_ERRORS = (413, 415, 422)
