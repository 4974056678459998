"""Who made a change and which commit it came from: the pure decision, no I/O.

The admission webhook server feeds :mod:`~kubeledger.identity.admission`, the audit
webhook receiver feeds :mod:`~kubeledger.identity.audit`; the attribution wired into the
recorder looks both up for a watched change, reads GitOps objects through
:mod:`~kubeledger.identity.gitops` and the object itself through
:mod:`~kubeledger.identity.commit`, and lets :mod:`~kubeledger.identity.resolve` decide.
Both caches share the bounded, expiring memory of :mod:`~kubeledger.identity.expiring`
and describe users as :class:`~kubeledger.identity.user.User`.
"""
