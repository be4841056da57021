"""The LLM gateway: every chat, embedding and probe call to an OpenAI-compatible model server
(vLLM or a commercial API) goes through here.

Plain Python and asyncio, no Django: the runner loads :class:`EndpointConfig` rows from the
database for each run and hands them to the process-wide ``gateway``, which adds what one
HTTP client does not give us: ordered fallback between endpoints, bounded retries with
backoff and ``Retry-After``, a circuit breaker, a per-endpoint concurrency limit shared by
every thread and event loop of the process, streaming reassembly and metrics. See
docs/llm.md.
"""
