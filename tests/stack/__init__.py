"""A real one-node Kubernetes cluster and Elasticsearch for the tests and ``make dev-up``.

``install`` builds or fetches what the stack runs (Kubernetes, etcd, containerd and helm from
the Go module proxy, Elasticsearch from Maven Central, images made here: ``images``,
``operator_image``); ``cluster`` starts and stops the control plane, the node (``node``, in a
network namespace of its own: ``network``) and Elasticsearch, each tracked by a PID file;
``release`` installs the operator through its chart. ``python -m stack`` is the command line.
"""
