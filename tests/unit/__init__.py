"""Unit tests: the pure parts of kubeledger, the CRD and the Helm chart; no cluster needed."""
