"""REST API for workflows and model endpoints: one class per operation."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from assistant_site.crypto import is_set
from assistant_site.permissions import ObjectPermission, ViewableObjectsFilter
from workflows import services
from workflows.models import ModelEndpoint, Workflow


class WorkflowOutputSerializer(serializers.ModelSerializer[Workflow]):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()

    class Meta:
        model = Workflow
        fields = ("id", "name", "description", "created_by", "created_at", "updated_at")


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


class WorkflowDetailApi(_WorkflowApi, generics.RetrieveAPIView[Workflow]):
    pass


class WorkflowUpdateApi(_WorkflowApi):
    @extend_schema(request=WorkflowInputSerializer, responses=WorkflowOutputSerializer)
    def patch(self, request: Request, pk: str) -> Response:
        workflow = self.get_object()
        payload = WorkflowInputSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        workflow = services.workflow_update(workflow=workflow, data=payload.validated_data)
        return Response(WorkflowOutputSerializer(workflow).data)


class WorkflowDeleteApi(_WorkflowApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.workflow_delete(workflow=self.get_object())
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
            "enabled",
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
        fields = ("name", "kind", "base_url", "model", "api_key", "enabled")


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


class ModelEndpointDeleteApi(_ModelEndpointApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        services.model_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
