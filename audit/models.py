from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditEntry(models.Model):
    """One append-only, hash-chained record of something a person or the system did.

    ``seq`` numbers entries 1, 2, 3... without gaps; ``entry_hash`` is SHA-256 over the
    entry's content and ``prev_hash``, which is the previous entry's ``entry_hash``. Actor
    and target are stored as plain values, not foreign keys, so that deleting a user or an
    object never has to touch (and cannot cascade into) the trail. On PostgreSQL a trigger
    refuses UPDATE and DELETE on this table.
    """

    seq = models.BigIntegerField(_("sequence"), db_index=True)
    created_at = models.DateTimeField(_("time"), db_index=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    actor_id = models.BigIntegerField(_("actor id"), null=True, blank=True)
    actor_username = models.CharField(_("actor"), max_length=150, blank=True, db_index=True)
    target_type = models.CharField(_("target type"), max_length=100, blank=True, db_index=True)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    target_repr = models.CharField(_("target"), max_length=200, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    extra = models.JSONField(_("details"), default=dict, blank=True)
    source = models.CharField(_("source"), max_length=16, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    entry_hash = models.CharField(_("hash"), max_length=64)

    class Meta:
        ordering = ["-seq"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        # Auditors export the trail; nobody adds, changes or deletes it.
        default_permissions = ("view",)
        permissions = [("export_auditentry", _("Can export the audit trail"))]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target_repr}".strip()
