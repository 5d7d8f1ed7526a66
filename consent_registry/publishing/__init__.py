"""Publishing: the gate, publishable renditions, connectors (Facebook, exports) and takedowns."""
