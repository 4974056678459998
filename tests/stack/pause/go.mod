module kubeledger.test/pause

go 1.22
