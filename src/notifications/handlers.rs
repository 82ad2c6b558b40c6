//! HTTP handlers of the notifications app (the settings API grows here).
