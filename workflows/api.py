"""REST API for workflows and model endpoints: one class per operation."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import ProtectedError, QuerySet
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant_site.crypto import is_set
from assistant_site.permissions import (
    ObjectPermission,
    ViewableObjectsFilter,
    user_actions,
    user_can,
)
from workflows import node_types, services
from workflows.engine.diff import graph_diff
from workflows.exceptions import (
    DraftConflictError,
    NoPublishedVersionError,
    WebhookRefusedError,
    WorkflowInvalidError,
)
from workflows.models import Credential, ModelEndpoint, NodeRun, Run, Workflow, WorkflowVersion
from workflows.nodes.message_trigger import ChatMessage
from workflows.nodes.webhook_trigger import SIGNATURE_HEADER, TIMESTAMP_HEADER
from workflows.selectors import run_list


class WorkflowOutputSerializer(serializers.ModelSerializer[Workflow]):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()

    class Meta:
        model = Workflow
        fields: tuple[str, ...] = (
            "id",
            "name",
            "description",
            "created_by",
            "created_at",
            "updated_at",
        )


class WorkflowInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class _WorkflowApi(generics.GenericAPIView[Workflow]):
    permission_classes = [ObjectPermission]
    filter_backends = [ViewableObjectsFilter]
    serializer_class = WorkflowOutputSerializer

    def get_queryset(self) -> QuerySet[Workflow]:
        return Workflow.objects.select_related("created_by")


class WorkflowListApi(_WorkflowApi, generics.ListAPIView[Workflow]):
    """Workflows the caller may view."""


class WorkflowCreateApi(_WorkflowApi):
    model_action = "add"

    @extend_schema(request=WorkflowInputSerializer, responses={201: WorkflowOutputSerializer})
    def post(self, request: Request) -> Response:
        payload = WorkflowInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        workflow = services.workflow_create(actor=request.user, **payload.validated_data)
        return Response(WorkflowOutputSerializer(workflow).data, status=status.HTTP_201_CREATED)


class WorkflowDetailOutputSerializer(WorkflowOutputSerializer):
    # What the caller may do here, so a client (the editor) can offer only those actions;
    # the API still checks each one.
    permissions = serializers.SerializerMethodField()

    class Meta(WorkflowOutputSerializer.Meta):
        fields = (*WorkflowOutputSerializer.Meta.fields, "permissions")

    def get_permissions(self, workflow: Workflow) -> list[str]:
        return user_actions(self.context["request"].user, workflow)


class WorkflowDetailApi(_WorkflowApi, generics.RetrieveAPIView[Workflow]):
    """The workflow, with `permissions`: the caller's actions on it (view, change, publish,
    run, delete)."""

    serializer_class = WorkflowDetailOutputSerializer


class WorkflowUpdateApi(_WorkflowApi):
    @extend_schema(request=WorkflowInputSerializer, responses=WorkflowOutputSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = WorkflowInputSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        workflow = services.workflow_update(workflow=workflow, data=payload.validated_data)
        return Response(WorkflowOutputSerializer(workflow).data)


class WorkflowDeleteApi(_WorkflowApi):
    @extend_schema(responses={204: None, 409: OpenApiTypes.OBJECT})
    def delete(self, request: Request, pk: str) -> Response:
        try:
            services.workflow_delete(workflow=self.get_object())
        except ProtectedError as exc:
            # A connector still starts this workflow: it must be rebound or deleted first.
            users = ", ".join(sorted({str(obj) for obj in exc.protected_objects}))
            return Response(
                {
                    "detail": f"the workflow is still used by: {users}; bind them to another "
                    "workflow or delete them first",
                    "field": "workflow",
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelEndpointOutputSerializer(serializers.ModelSerializer[ModelEndpoint]):
    # The key itself never leaves the server; callers learn only whether one is set.
    api_key_set = serializers.SerializerMethodField()

    class Meta:
        model = ModelEndpoint
        fields = (
            "id",
            "name",
            "kind",
            "base_url",
            "model",
            "api_key_set",
            "timeout_s",
            "max_concurrency",
            "default_params",
            "enabled",
            "probe_status",
            "probed_at",
            "probe_latency_ms",
            "probe_models",
            "probe_error",
            "created_at",
            "updated_at",
        )

    def get_api_key_set(self, endpoint: ModelEndpoint) -> bool:
        return is_set(endpoint.api_key)


class ModelEndpointInputSerializer(serializers.ModelSerializer[ModelEndpoint]):
    api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        trim_whitespace=True,
        help_text="Write-only. An empty string removes the key.",
    )

    class Meta:
        model = ModelEndpoint
        fields = (
            "name",
            "kind",
            "base_url",
            "model",
            "api_key",
            "timeout_s",
            "max_concurrency",
            "default_params",
            "enabled",
        )


class _ModelEndpointApi(generics.GenericAPIView[ModelEndpoint]):
    permission_classes = [ObjectPermission]
    filter_backends = [ViewableObjectsFilter]
    serializer_class = ModelEndpointOutputSerializer
    queryset = ModelEndpoint.objects.all()


class ModelEndpointListApi(_ModelEndpointApi, generics.ListAPIView[ModelEndpoint]):
    """Model endpoints the caller may view."""


class ModelEndpointCreateApi(_ModelEndpointApi):
    model_action = "add"

    @extend_schema(
        request=ModelEndpointInputSerializer, responses={201: ModelEndpointOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        payload = ModelEndpointInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        endpoint = services.model_endpoint_create(actor=request.user, data=payload.validated_data)
        return Response(
            ModelEndpointOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )


class ModelEndpointDetailApi(_ModelEndpointApi, generics.RetrieveAPIView[ModelEndpoint]):
    pass


class ModelEndpointUpdateApi(_ModelEndpointApi):
    @extend_schema(request=ModelEndpointInputSerializer, responses=ModelEndpointOutputSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        payload = ModelEndpointInputSerializer(endpoint, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        endpoint = services.model_endpoint_update(endpoint=endpoint, data=payload.validated_data)
        return Response(ModelEndpointOutputSerializer(endpoint).data)


class ModelEndpointProbeApi(_ModelEndpointApi):
    """Call the endpoint's /models and /health now and store what was found: up or down,
    the models it serves, the latency. Audited. Anyone who may view the endpoint may probe."""

    object_action = "view"

    @extend_schema(request=None, responses=ModelEndpointOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        endpoint = services.model_endpoint_probe(endpoint=self.get_object(), actor=request.user)
        return Response(ModelEndpointOutputSerializer(endpoint).data)


class ModelEndpointDeleteApi(_ModelEndpointApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.model_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class CredentialOutputSerializer(serializers.ModelSerializer[Credential]):
    # The value never leaves the server, not even to its owner.
    value_set = serializers.SerializerMethodField()

    class Meta:
        model = Credential
        fields = ("id", "name", "description", "value_set", "created_at", "updated_at")

    def get_value_set(self, credential: Credential) -> bool:
        return is_set(credential.value)


class CredentialInputSerializer(serializers.ModelSerializer[Credential]):
    value = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=10_000, help_text="Write-only."
    )

    class Meta:
        model = Credential
        fields = ("name", "description", "value")


class _CredentialApi(generics.GenericAPIView[Credential]):
    permission_classes = [ObjectPermission]
    filter_backends = [ViewableObjectsFilter]
    serializer_class = CredentialOutputSerializer
    queryset = Credential.objects.all()


class CredentialListApi(_CredentialApi, generics.ListAPIView[Credential]):
    """Credentials the caller may view (names and descriptions; never values)."""


class CredentialCreateApi(_CredentialApi):
    model_action = "add"

    @extend_schema(request=CredentialInputSerializer, responses={201: CredentialOutputSerializer})
    def post(self, request: Request) -> Response:
        payload = CredentialInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        credential = services.credential_create(actor=request.user, data=payload.validated_data)
        return Response(CredentialOutputSerializer(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailApi(_CredentialApi, generics.RetrieveAPIView[Credential]):
    pass


class CredentialUpdateApi(_CredentialApi):
    @extend_schema(request=CredentialInputSerializer, responses=CredentialOutputSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        credential = self.get_object()
        payload = CredentialInputSerializer(credential, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        credential = services.credential_update(credential=credential, data=payload.validated_data)
        return Response(CredentialOutputSerializer(credential).data)


class CredentialDeleteApi(_CredentialApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.credential_delete(credential=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- node types, drafts, validation, publishing, runs --------------------------------------


class NodeTypeOutputSerializer(serializers.Serializer[Any]):
    type = serializers.CharField()
    version = serializers.IntegerField()
    category = serializers.ChoiceField(choices=["trigger", "processing", "output"])
    title = serializers.CharField()
    description = serializers.CharField()
    config_schema = serializers.JSONField()
    outputs = serializers.DictField(child=serializers.CharField())
    template_fields = serializers.ListField(child=serializers.CharField())


class ProblemSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()
    node_id = serializers.CharField(allow_null=True)
    edge_id = serializers.CharField(allow_null=True)
    field = serializers.CharField(allow_null=True)


class DraftOutputSerializer(serializers.Serializer[Any]):
    graph = serializers.JSONField()
    revision = serializers.IntegerField()
    problems = ProblemSerializer(many=True)


class ValidationOutputSerializer(serializers.Serializer[Any]):
    valid = serializers.BooleanField()
    problems = ProblemSerializer(many=True)


class NodeTypeListApi(APIView):
    """Every node type with its config JSON Schema, outputs and category, for the editor."""

    @extend_schema(responses=NodeTypeOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        # Titles and descriptions in the request's language (LocaleMiddleware).
        return Response(
            [node_types.describe(node_type) for node_type in node_types.shipped_node_types()]
        )


def _invalid(exc: WorkflowInvalidError) -> Response:
    return Response(
        {"detail": str(exc), "problems": exc.problems}, status=status.HTTP_400_BAD_REQUEST
    )


class DraftInputSerializer(serializers.Serializer[Any]):
    graph = serializers.JSONField()
    base_revision = serializers.IntegerField(min_value=0)


class WorkflowDraftApi(_WorkflowApi):
    """GET the draft graph with its revision; the editor sends the revision back on save."""

    @extend_schema(responses=DraftOutputSerializer)
    def get(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        problems = services.workflow_validate(graph=workflow.draft, actor=request.user)
        return Response(
            {"graph": workflow.draft, "revision": workflow.draft_revision, "problems": problems}
        )


class WorkflowDraftSaveApi(_WorkflowApi):
    """Save the draft. 409 when someone else saved since `base_revision`."""

    @extend_schema(request=DraftInputSerializer, responses=DraftOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = DraftInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            saved = services.workflow_draft_save(
                workflow=workflow,
                graph=payload.validated_data["graph"],
                base_revision=payload.validated_data["base_revision"],
            )
        except DraftConflictError as exc:
            return Response(
                {"detail": str(exc), "current_revision": exc.current_revision},
                status=status.HTTP_409_CONFLICT,
            )
        except WorkflowInvalidError as exc:
            return _invalid(exc)
        problems = services.workflow_validate(graph=saved.draft, actor=request.user)
        return Response(
            {"graph": saved.draft, "revision": saved.draft_revision, "problems": problems}
        )


class GraphInputSerializer(serializers.Serializer[Any]):
    graph = serializers.JSONField(required=False, help_text="Default: the stored draft")


class WorkflowValidateApi(_WorkflowApi):
    """Every problem of a graph (the given one or the stored draft) at once."""

    object_action = "view"

    @extend_schema(request=GraphInputSerializer, responses=ValidationOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = GraphInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        graph = payload.validated_data.get("graph", workflow.draft)
        problems = services.workflow_validate(graph=graph, actor=request.user)
        return Response({"valid": not problems, "problems": problems})


class VersionOutputSerializer(serializers.ModelSerializer[WorkflowVersion]):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()

    class Meta:
        model = WorkflowVersion
        fields = ("number", "changelog", "created_by", "created_at", "graph")


class PublishInputSerializer(serializers.Serializer[Any]):
    changelog = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class WorkflowPublishApi(_WorkflowApi):
    """Publish the draft as the next immutable version (refused with the problems if invalid)."""

    object_action = "publish"

    @extend_schema(request=PublishInputSerializer, responses={201: VersionOutputSerializer})
    def post(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = PublishInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            version = services.workflow_publish(
                workflow=workflow,
                actor=request.user,
                changelog=payload.validated_data.get("changelog", ""),
            )
        except WorkflowInvalidError as exc:
            return _invalid(exc)
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class WorkflowVersionListApi(_WorkflowApi):
    @extend_schema(responses=VersionOutputSerializer(many=True))
    def get(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        versions = workflow.versions.select_related("created_by").order_by("-number")
        return Response(VersionOutputSerializer(versions, many=True).data)


class NodeRunOutputSerializer(serializers.ModelSerializer[NodeRun]):
    class Meta:
        model = NodeRun
        fields = (
            "seq",
            "node_id",
            "node_type",
            "status",
            "attempts",
            "inputs",
            "outputs",
            "branch",
            "error",
            "started_at",
            "duration_ms",
            "tokens_in",
            "tokens_out",
        )


class RunOutputSerializer(serializers.ModelSerializer[Run]):
    version = serializers.IntegerField(source="version.number", allow_null=True, default=None)
    nodes = NodeRunOutputSerializer(source="node_runs", many=True, read_only=True)

    class Meta:
        model = Run
        fields = (
            "id",
            "workflow",
            "version",
            "trigger_kind",
            "trigger_node",
            "conversation",
            "status",
            "input",
            "output",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "nodes",
        )


class RunInputSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(allow_blank=True, max_length=20_000)
    payload = serializers.DictField(required=False, default=dict)
    version = serializers.CharField(
        required=False,
        default="latest",
        help_text="'draft' for a test run of the draft, 'latest', or a version number",
    )


class WorkflowRunCreateApi(_WorkflowApi):
    """Start a run; it is queued and executed by a worker (202 with the run to follow)."""

    object_action = "run"

    @extend_schema(request=RunInputSerializer, responses={202: RunOutputSerializer})
    def post(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = RunInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        choice = data["version"]
        version = None
        if choice not in {"draft", "latest"}:
            version = workflow.versions.filter(
                number=int(choice) if choice.isdigit() else -1
            ).first()
            if version is None:
                raise ValidationError({"version": [f"no published version {choice!r}"]})
        try:
            run = services.run_start(
                workflow=workflow,
                actor=request.user,
                version=version,
                use_draft=choice == "draft",
                trigger_input={"text": data["text"], "payload": data["payload"]},
            )
        except WorkflowInvalidError as exc:
            return _invalid(exc)
        except NoPublishedVersionError as exc:
            raise ValidationError({"version": [str(exc)]}) from exc
        run.refresh_from_db()
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _pinned_version(workflow: Workflow, choice: str) -> WorkflowVersion | None:
    """'latest' (None) or a published version number, else a 400 naming the field."""
    if choice == "latest":
        return None
    version = workflow.versions.filter(number=int(choice) if choice.isdigit() else -1).first()
    if version is None:
        raise ValidationError({"version": [f"no published version {choice!r}"]})
    return version


class MessageInputSerializer(serializers.Serializer[Any]):
    """A chat message, as connectors hand them over (see workflows.nodes.message_trigger)."""

    text = serializers.CharField(allow_blank=True, max_length=20_000, trim_whitespace=False)
    chat_type = serializers.ChoiceField(choices=["private", "group"], default="private")
    mentioned = serializers.BooleanField(default=False)
    channel = serializers.CharField(max_length=100, default="api")
    chat_id = serializers.CharField(max_length=200)
    user_id = serializers.CharField(max_length=200)
    user_name = serializers.CharField(max_length=200, allow_blank=True, default="")
    message_id = serializers.CharField(max_length=200, allow_blank=True, default="")
    payload = serializers.DictField(default=dict)
    version = serializers.CharField(
        default="latest", help_text="'latest' or a published version number", write_only=True
    )


class MessageOutcomeSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["started", "ignored", "rate_limited"])
    run = serializers.UUIDField(allow_null=True)
    conversation = serializers.UUIDField(allow_null=True)
    reason = serializers.CharField()
    reply = serializers.CharField(help_text="what to answer the sender when rate limited")
    retry_after_s = serializers.FloatField()


class WorkflowMessageApi(_WorkflowApi):
    """Offer a chat message to the published workflow, as a connector does.

    202: a run started (follow it at /api/runs/<run>/); 200: no message trigger accepted the
    message (``reason`` says why); 429: the sender is over the workflow's rate limit, no run
    was created, ``reply`` is the polite answer to send.
    """

    object_action = "run"

    @extend_schema(
        request=MessageInputSerializer,
        responses={
            202: MessageOutcomeSerializer,
            200: MessageOutcomeSerializer,
            429: MessageOutcomeSerializer,
        },
    )
    def post(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = MessageInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        version = _pinned_version(workflow, data.pop("version"))
        try:
            outcome = services.message_receive(
                workflow=workflow,
                message=ChatMessage.model_validate(data),
                actor=request.user,
                version=version,
            )
        except NoPublishedVersionError as exc:
            raise ValidationError({"version": [str(exc)]}) from exc
        answer = {
            "status": outcome.status,
            "run": outcome.run.pk if outcome.run else None,
            "conversation": outcome.run.conversation_id if outcome.run else None,
            "reason": outcome.reason,
            "reply": outcome.reply,
            "retry_after_s": outcome.retry_after_s,
        }
        code = {"started": 202, "ignored": 200, "rate_limited": 429}[outcome.status]
        headers = (
            {"Retry-After": str(max(1, math.ceil(outcome.retry_after_s)))}
            if outcome.status == "rate_limited"
            else None
        )
        return Response(answer, status=code, headers=headers)


class NodeTestVariablesSerializer(serializers.Serializer[Any]):
    trigger = serializers.DictField(default=dict, help_text="what the trigger received")
    conversation = serializers.DictField(default=dict)
    nodes = serializers.DictField(
        child=serializers.DictField(),
        default=dict,
        help_text="outputs of upstream nodes by node id, as nodes.<id>.<output> reads them",
    )
    vars = serializers.DictField(default=dict, help_text="workflow variables")


class NodeTestInputSerializer(serializers.Serializer[Any]):
    variables = NodeTestVariablesSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data.get("variables", {}) or {}) - {
            "trigger",
            "conversation",
            "nodes",
            "vars",
        }
        if unknown:
            raise ValidationError(
                {"variables": [f"unknown variable root(s): {', '.join(sorted(unknown))}"]}
            )
        return attrs


class WorkflowNodeTestApi(_WorkflowApi):
    """Run one node of the draft with inputs typed by hand and get its outputs at once, as in
    Dify and n8n. Nothing is stored. The rest of the draft may be unfinished; a node that
    is itself invalid answers 400 with the problems."""

    object_action = "run"

    @extend_schema(request=NodeTestInputSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: str, node_id: str) -> Response:
        workflow = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"variables": ["send a JSON object"]})
        payload = NodeTestInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        variables = payload.validated_data.get("variables") or {}
        try:
            result = services.node_test_run(
                workflow=workflow, node_id=node_id, variables=variables, actor=request.user
            )
        except KeyError:
            return Response(
                {"detail": f"the draft has no node {node_id!r}", "field": "node_id"},
                status=status.HTTP_404_NOT_FOUND,
            )
        except WorkflowInvalidError as exc:
            return _invalid(exc)
        return Response(result)


def _webhook_run_answer(request: Request, run: Run, node_id: str) -> dict[str, Any]:
    status_url = request.build_absolute_uri(
        reverse("workflows:workflow-webhook-run", args=[run.workflow_id, node_id, run.pk])
    )
    return {
        "status": run.status,
        "run": run.pk,
        "output": run.output,
        "error": run.error,
        "status_url": status_url,
    }


class WorkflowWebhookApi(APIView):
    """A webhook trigger's URL: other systems POST signed JSON here (no login; the signature
    is the authentication). Asynchronous by default: 202 with the run and a ``status_url``
    (GET it, signed the same way over an empty body). With ``?wait=<seconds>`` (at most 30)
    the answer waits for the run: 200 with its output once finished, else 202 as above. A
    repeated delivery answers 200 and starts nothing; refusals answer 4xx/5xx with ``field``
    naming what is wrong."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[OpenApiParameter("wait", float, description="seconds to wait, 0-30")],
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, pk: str, node_id: str) -> Response:
        workflow = Workflow.objects.filter(pk=pk).first()
        try:
            wait_s = _wait_seconds(request.query_params.get("wait"))
            if workflow is None:
                raise WebhookRefusedError(404, "url", "no such workflow")
            run = services.webhook_receive(
                workflow=workflow,
                node_id=node_id,
                body=request.body,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
            )
        except WebhookRefusedError as exc:
            return Response({"detail": str(exc), "field": exc.field}, status=exc.status)
        if run is None:
            return Response({"status": "duplicate", "run": None}, status=status.HTTP_200_OK)
        if wait_s:
            run = services.webhook_run_wait(run=run, wait_s=wait_s)
        answer = _webhook_run_answer(request, run, node_id)
        finished = run.status in Run.FINISHED
        return Response(answer, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


def _wait_seconds(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        wait_s = float(raw)
    except ValueError:
        wait_s = -1.0
    if not 0 <= wait_s <= services.WEBHOOK_MAX_WAIT_S:
        raise WebhookRefusedError(
            400, "wait", f"wait must be seconds from 0 to {services.WEBHOOK_MAX_WAIT_S:g}"
        )
    return wait_s


class WorkflowWebhookRunApi(APIView):
    """The status and output of a run a webhook started: GET, signed like the webhook over
    an empty body (X-Timestamp, X-Signature)."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: str, node_id: str, run_id: str) -> Response:
        workflow = Workflow.objects.filter(pk=pk).first()
        try:
            if workflow is None:
                raise WebhookRefusedError(404, "url", "no such workflow")
            run = services.webhook_run_status(
                workflow=workflow,
                node_id=node_id,
                run_id=run_id,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
            )
        except WebhookRefusedError as exc:
            return Response({"detail": str(exc), "field": exc.field}, status=exc.status)
        return Response(_webhook_run_answer(request, run, node_id))


class RunSummarySerializer(serializers.ModelSerializer[Run]):
    version = serializers.IntegerField(source="version.number", allow_null=True, default=None)

    class Meta:
        model = Run
        fields = (
            "id",
            "version",
            "trigger_kind",
            "status",
            "input",
            "output",
            "error",
            "created_at",
            "duration_ms",
        )


class WorkflowRunListApi(_WorkflowApi):
    """The workflow's runs, newest first, 50 a page (`?page=`); each run's trace is at
    `runs/<id>/`."""

    @extend_schema(responses=RunSummarySerializer(many=True))
    def get(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        runs = workflow.runs.select_related("version").order_by("-created_at")
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunSummarySerializer(page, many=True).data)


class RunDetailApi(generics.RetrieveAPIView[Run]):
    """A run with its node trace; visible to whoever may view its workflow."""

    serializer_class = RunOutputSerializer

    def get_queryset(self) -> QuerySet[Run]:
        return (
            run_list(user=self.request.user).select_related("version").prefetch_related("node_runs")
        )


class WorkflowExportApi(_WorkflowApi):
    """Download the draft (default) or a version as YAML (default) or JSON."""

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["yaml", "json"]),
            OpenApiParameter("version", str, description="'draft' or a version number"),
        ],
        responses={(200, "application/yaml"): OpenApiTypes.STR},
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        workflow = self.get_object()
        fmt = request.query_params.get("format", "yaml")
        if fmt not in {"yaml", "json"}:
            raise ValidationError({"format": ["choose yaml or json"]})
        version = _version_param(workflow, request.query_params.get("version", "draft"))
        text = services.export_dumps(
            services.workflow_export(workflow=workflow, version=version), fmt
        )
        content_type = "application/json" if fmt == "json" else "application/yaml"
        response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
        suffix = f"v{version.number}" if version else "draft"
        response["Content-Disposition"] = (
            f'attachment; filename="workflow-{workflow.pk}-{suffix}.{fmt}"'
        )
        return response


def _version_param(
    workflow: Workflow, value: str, field: str = "version"
) -> WorkflowVersion | None:
    if value == "draft":
        return None
    version = workflow.versions.filter(number=int(value) if value.isdigit() else -1).first()
    if version is None:
        raise ValidationError({field: [f"no published version {value!r}"]})
    return version


class ImportInputSerializer(serializers.Serializer[Any]):
    document = serializers.CharField(max_length=2_000_000, help_text="An export, YAML or JSON")
    name = serializers.CharField(required=False, max_length=200)


class WorkflowImportApi(_WorkflowApi):
    """Create a workflow from an export; its graph becomes the new workflow's draft."""

    model_action = "add"

    @extend_schema(request=ImportInputSerializer, responses={201: WorkflowOutputSerializer})
    def post(self, request: Request) -> Response:
        payload = ImportInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            workflow = services.workflow_import(
                actor=request.user,
                text=payload.validated_data["document"],
                name=payload.validated_data.get("name"),
            )
        except WorkflowInvalidError as exc:
            return _invalid(exc)
        return Response(WorkflowOutputSerializer(workflow).data, status=status.HTTP_201_CREATED)


class WorkflowDiffApi(_WorkflowApi):
    """What changed between two versions (or a version and the draft)."""

    @extend_schema(
        parameters=[OpenApiParameter("from", str, required=True), OpenApiParameter("to", str)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        if "from" not in request.query_params:
            raise ValidationError({"from": ["give the version to compare from"]})
        old = _version_param(workflow, request.query_params["from"], "from")
        new = _version_param(workflow, request.query_params.get("to", "draft"), "to")
        old_graph = old.graph if old else workflow.draft
        new_graph = new.graph if new else workflow.draft
        return Response(graph_diff(old_graph, new_graph))


class WorkflowRollbackApi(_WorkflowApi):
    """Publish an older version again as the newest one (and make it the draft)."""

    object_action = "publish"

    @extend_schema(request=None, responses={201: VersionOutputSerializer})
    def post(self, request: Request, pk: str, number: int) -> Response:
        workflow = self.get_object()
        if not workflow.versions.filter(number=number).exists():
            raise ValidationError({"version": [f"no published version {number}"]})
        version = services.workflow_rollback(workflow=workflow, number=number, actor=request.user)
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class RunCancelApi(RunDetailApi):
    """Cancel a run: a queued one at once, a running one within a few seconds."""

    @extend_schema(request=None, responses={202: RunOutputSerializer})
    def post(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if not user_can(request.user, "run", run.workflow):
            self.permission_denied(request, message="you may not run (or cancel) this workflow")
        if run.status in Run.FINISHED:
            raise ValidationError({"status": [f"the run has already finished ({run.status})"]})
        services.run_cancel(run=run, actor=request.user)
        run.refresh_from_db()
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)
