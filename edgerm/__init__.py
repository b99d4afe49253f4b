"""EdgeRM shared library: the wire codec (`edgerm.wire`), CoAP and WebSocket transports
(`edgerm.coap`, `edgerm.transport`), the framework SDK and the `edgerm` CLI."""
