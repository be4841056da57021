"""REST API for knowledge bases, documents and hit testing: one class per operation."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from pydantic import ValidationError as PydanticValidationError
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from assistant_site.crypto import SecretDecryptionError
from assistant_site.permissions import (
    ObjectPermission,
    ViewableObjectsFilter,
    permitted,
    user_actions,
    user_can,
    viewable,
)
from audit.services import audit_record
from knowledge import services
from knowledge.exceptions import KnowledgeError
from knowledge.models import Document, KnowledgeBase
from knowledge.retrieval import knowledge_search, knowledge_search_reranked
from workflows.llm.endpoints import EndpointConfig
from workflows.models import ModelEndpoint
from workflows.nodes.knowledge_retrieval import RerankOutcome, SearchFilters

MAX_FILES_PER_UPLOAD = 50


class KnowledgeBaseOutputSerializer(serializers.ModelSerializer[KnowledgeBase]):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    document_count = serializers.SerializerMethodField()

    class Meta:
        model = KnowledgeBase
        fields: tuple[str, ...] = (
            "id",
            "name",
            "description",
            "embedding_endpoint",
            "chunk_size",
            "chunk_overlap",
            "document_count",
            "created_by",
            "created_at",
            "updated_at",
        )

    def get_document_count(self, base: KnowledgeBase) -> int:
        return base.documents.count()


class KnowledgeBaseInputSerializer(serializers.ModelSerializer[KnowledgeBase]):
    class Meta:
        model = KnowledgeBase
        fields = ("name", "description", "embedding_endpoint", "chunk_size", "chunk_overlap")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        size = attrs.get("chunk_size", getattr(self.instance, "chunk_size", 500))
        overlap = attrs.get("chunk_overlap", getattr(self.instance, "chunk_overlap", 50))
        if overlap * 2 >= size:
            raise ValidationError({"chunk_overlap": ["must be less than half the chunk size"]})
        endpoint = attrs.get("embedding_endpoint")
        if endpoint is not None and endpoint.kind != "embedding":
            raise ValidationError({"embedding_endpoint": ["not an embedding endpoint"]})
        return attrs


class _KnowledgeBaseApi(generics.GenericAPIView[KnowledgeBase]):
    permission_classes = [ObjectPermission]
    filter_backends = [ViewableObjectsFilter]
    serializer_class = KnowledgeBaseOutputSerializer

    def get_queryset(self) -> QuerySet[KnowledgeBase]:
        return KnowledgeBase.objects.select_related("created_by")


class KnowledgeBaseListApi(_KnowledgeBaseApi, generics.ListAPIView[KnowledgeBase]):
    """Knowledge bases the caller may view."""


class KnowledgeBaseCreateApi(_KnowledgeBaseApi):
    model_action = "add"

    @extend_schema(
        request=KnowledgeBaseInputSerializer, responses={201: KnowledgeBaseOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        payload = KnowledgeBaseInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        base = services.knowledge_base_create(actor=request.user, data=payload.validated_data)
        return Response(KnowledgeBaseOutputSerializer(base).data, status=status.HTTP_201_CREATED)


class KnowledgeBaseDetailOutputSerializer(KnowledgeBaseOutputSerializer):
    # The caller's actions on the base (view, change, delete, manage_documents), so a client
    # offers only those; the API still checks each one.
    permissions = serializers.SerializerMethodField()

    class Meta(KnowledgeBaseOutputSerializer.Meta):
        fields = (*KnowledgeBaseOutputSerializer.Meta.fields, "permissions")

    def get_permissions(self, base: KnowledgeBase) -> list[str]:
        return user_actions(self.context["request"].user, base)


class KnowledgeBaseDetailApi(_KnowledgeBaseApi, generics.RetrieveAPIView[KnowledgeBase]):
    """The base, with `permissions`: the caller's actions on it."""

    serializer_class = KnowledgeBaseDetailOutputSerializer


class KnowledgeBaseUpdateApi(_KnowledgeBaseApi):
    @extend_schema(request=KnowledgeBaseInputSerializer, responses=KnowledgeBaseOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        base = self.get_object()
        payload = KnowledgeBaseInputSerializer(base, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        base = services.knowledge_base_update(base=base, data=payload.validated_data)
        return Response(KnowledgeBaseOutputSerializer(base).data)


class KnowledgeBaseDeleteApi(_KnowledgeBaseApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.knowledge_base_delete(base=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- documents -------------------------------------------------------------------------------


class DocumentOutputSerializer(serializers.ModelSerializer[Document]):
    class Meta:
        model = Document
        fields = (
            "id",
            "knowledge_base",
            "filename",
            "title",
            "kind",
            "size",
            "sha256",
            "status",
            "error",
            "chunk_count",
            "pages",
            "enabled",
            "created_at",
            "updated_at",
        )


class DocumentUploadSerializer(serializers.Serializer[Any]):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=False), min_length=1, max_length=50
    )


class DocumentListApi(_KnowledgeBaseApi):
    """The documents of a knowledge base, newest first, with their ingestion status."""

    @extend_schema(responses=DocumentOutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        base = self.get_object()
        return Response(DocumentOutputSerializer(base.documents.all(), many=True).data)


class DocumentUploadApi(_KnowledgeBaseApi):
    """Upload one or more files (multipart, field ``files``); each is ingested on the worker.
    Follow their status with GET .../documents/ or the WebSocket /ws/knowledge/<id>/."""

    object_action = "manage_documents"
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": DocumentUploadSerializer},
        responses={201: DocumentOutputSerializer(many=True)},
    )
    def post(self, request: Request, pk: int) -> Response:
        base = self.get_object()
        payload = DocumentUploadSerializer(data={"files": request.FILES.getlist("files")})
        payload.is_valid(raise_exception=True)
        documents = []
        try:
            for upload in payload.validated_data["files"]:
                documents.append(
                    services.document_upload(base=base, upload=upload, actor=request.user)
                )
        except KnowledgeError as exc:
            raise ValidationError({"files": [str(exc)]}) from exc
        return Response(
            DocumentOutputSerializer(documents, many=True).data, status=status.HTTP_201_CREATED
        )


class _DocumentApi(generics.GenericAPIView[Document]):
    """A document is as visible as its knowledge base; changing it needs manage_documents."""

    serializer_class = DocumentOutputSerializer
    action = "view"

    def get_queryset(self) -> QuerySet[Document]:
        bases = viewable(self.request.user, KnowledgeBase.objects.all())
        return Document.objects.filter(knowledge_base__in=bases).select_related("knowledge_base")

    def get_object(self) -> Document:
        document = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if document is None:
            raise Http404
        if not user_can(self.request.user, self.action, document.knowledge_base):
            self.permission_denied(self.request, message="you may not manage these documents")
        return document


class DocumentDetailApi(_DocumentApi):
    def get(self, request: Request, pk: str) -> Response:
        return Response(DocumentOutputSerializer(self.get_object()).data)


class DocumentEnableApi(_DocumentApi):
    action = "manage_documents"

    @extend_schema(request=None, responses=DocumentOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        document = services.document_set_enabled(
            document=self.get_object(), enabled=True, actor=request.user
        )
        return Response(DocumentOutputSerializer(document).data)


class DocumentDisableApi(_DocumentApi):
    action = "manage_documents"

    @extend_schema(request=None, responses=DocumentOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        document = services.document_set_enabled(
            document=self.get_object(), enabled=False, actor=request.user
        )
        return Response(DocumentOutputSerializer(document).data)


class DocumentRetryApi(_DocumentApi):
    action = "manage_documents"

    @extend_schema(request=None, responses=DocumentOutputSerializer)
    def post(self, request: Request, pk: str) -> Response:
        document = services.document_retry(document=self.get_object(), actor=request.user)
        return Response(DocumentOutputSerializer(document).data)


class DocumentDeleteApi(_DocumentApi):
    action = "manage_documents"

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.document_delete(document=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentDownloadApi(_DocumentApi):
    """The original file, as uploaded. Audited."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: str) -> FileResponse:
        document = self.get_object()
        audit_record(
            action="document.download",
            target=document.knowledge_base,
            actor=request.user,
            extra={"document": str(document.pk), "file": document.filename},
        )
        return FileResponse(
            document.file.open("rb"), as_attachment=True, filename=document.filename
        )


# --- hit testing -----------------------------------------------------------------------------


@extend_schema_field(SearchFilters.model_json_schema())
class SearchFiltersField(serializers.Field[SearchFilters, Any, dict[str, Any], Any]):
    """A JSON object checked by ``SearchFilters``, the retrieval node's filter model, so the
    API and the node accept exactly the same filters. Errors name the filter field."""

    def to_internal_value(self, data: Any) -> SearchFilters:
        if not isinstance(data, dict):
            raise ValidationError('must be an object such as {"file_types": ["pdf"]}')
        try:
            return SearchFilters.model_validate(data)
        except PydanticValidationError as exc:
            problems: dict[str, list[str]] = {}
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "non_field_errors"
                problems.setdefault(field, []).append(error["msg"])
            raise ValidationError(problems) from exc

    def to_representation(self, value: SearchFilters) -> dict[str, Any]:
        return value.model_dump(mode="json", exclude_none=True)


class SearchInputSerializer(serializers.Serializer[Any]):
    query = serializers.CharField(max_length=2000)
    top_k = serializers.IntegerField(min_value=1, max_value=50, default=5)
    min_score = serializers.FloatField(min_value=0, max_value=1, default=0.0)
    mode = serializers.ChoiceField(choices=["hybrid", "vector", "keyword"], default="hybrid")
    filters = SearchFiltersField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Search only the passages these admit: document_ids, title_contains, "
        "file_types, heading_prefix (all given must hold).",
    )
    rerank_endpoint = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=100,
        help_text="Name of a model endpoint of kind rerank you may use: reorders the best "
        "passages found; min_score then applies to its scores.",
    )

    def validate_rerank_endpoint(self, name: str | None) -> EndpointConfig | None:
        if name is None:
            return None
        usable = permitted(self.context["request"].user, "use", ModelEndpoint.objects.all())
        endpoint = usable.filter(name=name).first()
        if endpoint is None:
            raise ValidationError(f"no model endpoint named {name!r} that you may use")
        if endpoint.kind != ModelEndpoint.Kind.RERANK:
            raise ValidationError(f"{name!r} is a {endpoint.kind} endpoint, not a rerank endpoint")
        if not endpoint.enabled:
            raise ValidationError(f"{name!r} is disabled")
        from workflows.services import endpoint_config

        try:
            return endpoint_config(endpoint)
        except SecretDecryptionError as exc:
            raise ValidationError(f"the API key of {name!r} cannot be decrypted") from exc


class PassageSerializer(serializers.Serializer[Any]):
    text = serializers.CharField()
    document_id = serializers.CharField()
    document_title = serializers.CharField()
    location = serializers.CharField()
    score = serializers.FloatField()
    chunk_id = serializers.CharField()


class SearchOutputSerializer(serializers.Serializer[Any]):
    passages = PassageSerializer(many=True)
    reranked = serializers.BooleanField(
        help_text="The passages are in the rerank endpoint's order, with its scores."
    )
    rerank_error = serializers.CharField(
        source="error",
        help_text="Why the search order was kept although a rerank endpoint was given.",
    )


class KnowledgeBaseSearchApi(_KnowledgeBaseApi):
    """Hit testing: the passages a question would retrieve, their scores and sources."""

    object_action = "view"

    @extend_schema(request=SearchInputSerializer, responses=SearchOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        base = self.get_object()
        payload = SearchInputSerializer(data=request.data, context={"request": request})
        payload.is_valid(raise_exception=True)
        options = dict(payload.validated_data)
        endpoint = options.pop("rerank_endpoint")
        try:
            if endpoint is None:
                outcome = RerankOutcome(knowledge_search(bases=[base], **options), reranked=False)
            else:
                outcome = knowledge_search_reranked(bases=[base], endpoint=endpoint, **options)
        except KnowledgeError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(SearchOutputSerializer(outcome).data)
