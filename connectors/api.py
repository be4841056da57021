"""REST API for connectors, their inbound events and deliveries: one class per operation."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from assistant_site.http import OutboundHttpError
from assistant_site.permissions import ObjectPermission, ViewableObjectsFilter, user_can, viewable
from connectors import services
from connectors.base import DeliveryError
from connectors.models import Connector, Delivery, InboundEvent
from connectors.registry import ADAPTERS, adapter_for, connector_settings, secrets_dict
from workflows.models import Workflow


class ConnectorOutputSerializer(serializers.ModelSerializer[Connector]):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    callback_url = serializers.SerializerMethodField()
    callback_hint = serializers.SerializerMethodField()
    secrets_set = serializers.SerializerMethodField(
        help_text="Names of the credentials stored (values are never shown)."
    )
    listener = serializers.SerializerMethodField(
        help_text="Polling and long-connection modes: the listener process's last report "
        "(connected, last event, reconnects, last error); null when none reported lately."
    )

    class Meta:
        model = Connector
        fields = (
            "id",
            "name",
            "platform",
            "workflow",
            "enabled",
            "api_base_url",
            "config",
            "secrets_set",
            "listener",
            "group_policy",
            "streaming",
            "welcome_text",
            "error_text",
            "callback_url",
            "callback_hint",
            "webhook_url",
            "last_error",
            "last_error_at",
            "created_by",
            "created_at",
            "updated_at",
        )

    def get_callback_url(self, connector: Connector) -> str:
        return services.callback_url(connector)

    def get_callback_hint(self, connector: Connector) -> str:
        try:
            current = connector_settings(connector)
        except Exception:  # stored settings the platform now refuses: say so, do not fail
            return "the connector's settings are invalid; edit them"
        return adapter_for(connector.platform).callback_hint(
            current, services.callback_url(connector)
        )

    def get_listener(self, connector: Connector) -> dict[str, Any] | None:
        if connector.config.get("mode") not in {"polling", "long_connection"}:
            return None
        return services.listener_health(connector)

    def get_secrets_set(self, connector: Connector) -> list[str]:
        return sorted(secrets_dict(connector))


class ConnectorInputSerializer(serializers.ModelSerializer[Connector]):
    platform = serializers.ChoiceField(choices=sorted(ADAPTERS))
    workflow = serializers.PrimaryKeyRelatedField(queryset=Workflow.objects.all())
    config = serializers.DictField(required=False)
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=4096),
        required=False,
        write_only=True,
        help_text="Write-only. Given keys replace the stored ones; the others are kept.",
    )

    class Meta:
        model = Connector
        fields = (
            "name",
            "platform",
            "workflow",
            "enabled",
            "api_base_url",
            "config",
            "secrets",
            "group_policy",
            "streaming",
            "welcome_text",
            "error_text",
        )

    def validate_workflow(self, workflow: Workflow) -> Workflow:
        # Whoever binds a workflow lets a platform's users run it: they must be allowed to.
        user = self.context["request"].user
        if not user_can(user, "view", workflow):
            raise ValidationError("no such workflow")
        if not user_can(user, "run", workflow):
            raise ValidationError("you may not run this workflow, so you cannot bind it")
        return workflow


def _saved(call: Any, **kwargs: Any) -> Connector:
    try:
        connector: Connector = call(**kwargs)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict) from exc
    return connector


class _ConnectorApi(generics.GenericAPIView[Connector]):
    permission_classes = [ObjectPermission]
    filter_backends = [ViewableObjectsFilter]
    serializer_class = ConnectorOutputSerializer

    def get_queryset(self) -> QuerySet[Connector]:
        return Connector.objects.select_related("created_by")


class ConnectorListApi(_ConnectorApi, generics.ListAPIView[Connector]):
    """Connectors the caller may view."""


class ConnectorCreateApi(_ConnectorApi):
    model_action = "add"

    @extend_schema(request=ConnectorInputSerializer, responses={201: ConnectorOutputSerializer})
    def post(self, request: Request) -> Response:
        payload = ConnectorInputSerializer(data=request.data, context={"request": request})
        payload.is_valid(raise_exception=True)
        connector = _saved(
            services.connector_create, actor=request.user, data=payload.validated_data
        )
        return Response(ConnectorOutputSerializer(connector).data, status=status.HTTP_201_CREATED)


class ConnectorDetailApi(_ConnectorApi, generics.RetrieveAPIView[Connector]):
    pass


class ConnectorUpdateApi(_ConnectorApi):
    @extend_schema(request=ConnectorInputSerializer, responses=ConnectorOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        connector = self.get_object()
        payload = ConnectorInputSerializer(
            connector, data=request.data, partial=True, context={"request": request}
        )
        payload.is_valid(raise_exception=True)
        connector = _saved(
            services.connector_update, connector=connector, data=payload.validated_data
        )
        return Response(ConnectorOutputSerializer(connector).data)


class ConnectorDeleteApi(_ConnectorApi):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.connector_delete(connector=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRegisterInputSerializer(serializers.Serializer[Any]):
    remove = serializers.BooleanField(default=False)


class ConnectorWebhookApi(_ConnectorApi):
    """Telegram: call setWebhook with the callback URL and secret (or deleteWebhook with
    ``remove``). Audited."""

    object_action = "change"

    @extend_schema(request=WebhookRegisterInputSerializer, responses=ConnectorOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        connector = self.get_object()
        payload = WebhookRegisterInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        if connector.platform != "telegram":
            raise ValidationError({"platform": ["only Telegram connectors register a webhook"]})
        try:
            services.telegram_webhook_set(
                connector=connector, actor=request.user, remove=payload.validated_data["remove"]
            )
        except (DeliveryError, OutboundHttpError) as exc:
            return Response(
                {"detail": f"Telegram refused: {exc}", "field": "secrets"},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response(ConnectorOutputSerializer(connector).data)


class ConnectorIdentifyApi(_ConnectorApi):
    """Ask the platform who the bot is and store it in the config (Feishu: ``bot_open_id``,
    which recognises @-mentions; Telegram: ``bot_username`` and ``bot_id``)."""

    object_action = "change"

    @extend_schema(request=None, responses=ConnectorOutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        connector = self.get_object()
        if connector.platform not in {"feishu", "telegram"}:
            raise ValidationError({"platform": ["only Feishu and Telegram bots have an identity"]})
        try:
            connector = _saved(services.connector_identify, connector=connector)
        except (DeliveryError, OutboundHttpError) as exc:
            return Response(
                {"detail": f"the platform refused: {exc}", "field": "secrets"},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response(ConnectorOutputSerializer(connector).data)


# --- events and deliveries --------------------------------------------------------------------


class DeliveryOutputSerializer(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = (
            "id",
            "connector",
            "event",
            "run",
            "idempotency_key",
            "chat_id",
            "text",
            "status",
            "attempts",
            "last_error",
            "message_ids",
            "created_at",
            "next_attempt_at",
            "sent_at",
        )


_EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "connector",
    "dedupe_key",
    "event_id",
    "event_type",
    "kind",
    "message_id",
    "chat_id",
    "user_id",
    "text",
    "status",
    "reason",
    "run",
    "received_at",
    "processed_at",
    "deliveries",
)


class InboundEventOutputSerializer(serializers.ModelSerializer[InboundEvent]):
    deliveries = DeliveryOutputSerializer(many=True, read_only=True)

    class Meta:
        model = InboundEvent
        fields = _EVENT_FIELDS


class InboundEventDetailSerializer(InboundEventOutputSerializer):
    class Meta:
        model = InboundEvent
        fields = (*_EVENT_FIELDS, "item", "payload", "source_ip")


def _viewable_connectors(request: Request) -> QuerySet[Connector]:
    return viewable(request.user, Connector.objects.all())


class InboundEventListApi(generics.ListAPIView[InboundEvent]):
    """Events of the connectors the caller may view, newest first; filter with
    ``?connector=<id>``, ``?status=``, ``?run=<run id>`` (which event started a run)."""

    serializer_class = InboundEventOutputSerializer

    def get_queryset(self) -> QuerySet[InboundEvent]:
        events = InboundEvent.objects.filter(
            connector__in=_viewable_connectors(self.request)
        ).prefetch_related("deliveries")
        params = self.request.query_params
        for field, value in (
            ("connector", params.get("connector")),
            ("status", params.get("status")),
            ("run", params.get("run")),
        ):
            if value:
                events = events.filter(**{field: value})
        return events


class InboundEventDetailApi(generics.RetrieveAPIView[InboundEvent]):
    serializer_class = InboundEventDetailSerializer

    def get_queryset(self) -> QuerySet[InboundEvent]:
        return InboundEvent.objects.filter(
            connector__in=_viewable_connectors(self.request)
        ).prefetch_related("deliveries")


class ReplayOutputSerializer(serializers.Serializer[Any]):
    run = serializers.UUIDField()


class InboundEventReplayApi(generics.GenericAPIView[InboundEvent]):
    """Run the event's message against the workflow's current draft, as a test run: the
    answer is in the run's trace, nothing is sent to the chat. Needs "use" on the connector
    and "run" on the workflow."""

    serializer_class = ReplayOutputSerializer

    def get_queryset(self) -> QuerySet[InboundEvent]:
        return InboundEvent.objects.filter(
            connector__in=_viewable_connectors(self.request)
        ).select_related("connector", "connector__workflow")

    @extend_schema(request=None, responses={202: ReplayOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        event = self.get_object()
        connector = event.connector
        if not user_can(request.user, "use", connector) or not user_can(
            request.user, "run", connector.workflow
        ):
            raise PermissionDenied("replaying needs use on the connector and run on the workflow")
        try:
            run = services.event_replay(event=event, actor=request.user)
        except services.ReplayError as exc:
            raise ValidationError({exc.field: [exc.message]}) from exc
        return Response({"run": run.pk}, status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(generics.ListAPIView[Delivery]):
    """Deliveries of the connectors the caller may view; ``?status=dead`` lists dead letters."""

    serializer_class = DeliveryOutputSerializer

    def get_queryset(self) -> QuerySet[Delivery]:
        deliveries = Delivery.objects.filter(connector__in=_viewable_connectors(self.request))
        for field in ("connector", "status", "run"):
            value = self.request.query_params.get(field)
            if value:
                deliveries = deliveries.filter(**{field: value})
        return deliveries


class DeliveryRetryApi(generics.GenericAPIView[Delivery]):
    """Send a dead letter again (needs change on its connector). Audited."""

    serializer_class = DeliveryOutputSerializer

    def get_queryset(self) -> QuerySet[Delivery]:
        return Delivery.objects.filter(
            connector__in=_viewable_connectors(self.request)
        ).select_related("connector")

    @extend_schema(request=None, responses={202: DeliveryOutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        delivery = self.get_object()
        if not user_can(request.user, "change", delivery.connector):
            raise PermissionDenied("retrying a delivery needs change on its connector")
        if delivery.status != Delivery.Status.DEAD:
            raise ValidationError({"status": ["only a dead letter can be retried"]})
        delivery = services.delivery_retry(delivery=delivery, actor=request.user)
        return Response(DeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
