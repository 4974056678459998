"""A real local Kubernetes + Elasticsearch stack for kubeledger's tests and ``make dev-up``.

Installs (``install``), starts and stops (``cluster``) etcd, kube-apiserver,
kube-controller-manager and Elasticsearch on 127.0.0.1, each tracked by a PID file.
"""
