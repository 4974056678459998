"""The Elasticsearch sink: ``ecs`` (a record as an ECS document), ``template`` (the index
template and ILM policy, pure builders) and ``sink`` (the client: setup and delivery)."""
