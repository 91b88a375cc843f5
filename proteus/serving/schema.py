"""The OpenAPI schema of the router service (`proteus.serving.server`): documentation only.

Requests are parsed by `proteus.serving.protocol` (the shared request model), not by these
models: they describe, for /openapi.json and /docs, what that parser accepts and what the service
answers.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class RouteRequest(BaseModel):
    query: str | None = Field(None, description="query text (artifacts with a text encoder)")
    features: list[float] | None = Field(None, description="the query's D features")
    tau: float = Field(..., ge=0.0, le=1.0, description="accuracy target τ")
    task: str | None = Field(None, description="the query's task, one of GET /v1/models' "
                             "'tasks' (artifacts with a task prior; null: an unknown task)")


class BatchRouteRequest(BaseModel):
    requests: list[RouteRequest]


class RouteDecisionModel(BaseModel):
    model: str
    model_index: int
    mu: float = Field(..., description="quality preference μ in [0, 1]")
    p_hat: dict[str, float] = Field(..., description="predicted correctness per model")
    c_hat: dict[str, float] = Field(..., description="predicted cost (USD) per model")
    lambda_: float = Field(..., alias="lambda", description="λ at the operating τ")
    tau: float
    operating_tau: float | None = Field(..., description="the τ' the policy was called with "
                                        "(null at a fixed-model operating point)")
    operating_point: int = Field(..., description="index of the operating point in the "
                                 "artifact's table (GET /v1/models)")
    feasible: bool
    certified: bool
    reason: str
    operating_model: str | None = Field(None, description="the model of a fixed-model point")


class ItemErrorDetail(BaseModel):
    status: int = Field(..., description="the HTTP status this request alone would have got")
    code: str
    message: str = Field(..., description="what is wrong, prefixed with 'requests[i]: '")


class ItemError(BaseModel):
    error: ItemErrorDetail


class BatchRouteResponse(BaseModel):
    decisions: list[RouteDecisionModel | ItemError] = Field(
        ..., description="one entry per request, in order: a request that fails does so alone")


class ErrorResponse(BaseModel):
    detail: str


class ModelInfo(BaseModel):
    name: str
    index: int
    price: dict[str, float] | None
    mean_cost_usd: float


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    feasible_tau: dict[str, float | None]
    certified: bool
    promise: str | None = Field(None, description="the certified promise in words, e.g. "
                                "'P(accuracy of 1000 requests < τ) <= 0.05' (null: uncertified)")
    fallback: str
    encoder: str
    feature_dim: int
    accepts_text: bool
    tasks: list[str] = Field(..., description="the task prior's tasks ([] without one)")


class HealthResponse(BaseModel):
    status: str
    batches: int
    rows: int
    largest_batch: int
