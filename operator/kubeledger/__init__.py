"""kubeledger: a tamper-evident audit trail of Kubernetes workload and RBAC changes.

Where things are decided (one module per idea):

- what is watched: ``kinds``; kopf handlers only: ``watching``; start-up wiring: ``runtime``
- what an object's meaningful state is: ``projection``; secrets out: ``redaction``
- what changed: ``diff``; what kind of change it was: ``classify``
- what a record looks like: ``model``; the hash chain: ``chain``; writing: ``ledger``
- which event becomes a record: ``recorder``; downtime: ``catchup``; old records: ``retention``
- who and which commit: ``attribution`` over ``identity`` (admission, audit, GitOps, ...);
  the endpoints the apiserver calls: ``receivers``
- Elasticsearch: ``ecs`` (documents), ``elasticsearch_setup`` (template), ``elasticsearch_sink``
  and ``delivery`` (shipping from the cluster outbox)
- settings: ``config``; the command line: ``cli``; hot-path figures: ``bench``
"""
