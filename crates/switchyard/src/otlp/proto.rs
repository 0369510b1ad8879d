//! The OpenTelemetry protobuf messages an OTLP/HTTP trace export sends
//! (`opentelemetry/proto/collector/trace/v1/trace_service.proto` and the
//! messages it uses), with their field numbers; only the fields Switchyard
//! fills are declared (a receiver ignores none it needs: the others are
//! optional). Public so that a test receiver can decode what it gets.

/// `ExportTraceServiceRequest`: the body of `POST /v1/traces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// The spans, by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`: the spans of one resource (this proxy).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// What produced them (`service.name` and the like).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// The spans, by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Its attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `ScopeSpans`: the spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The scope (`switchyard` and its version).
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// `InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// The W3C `tracestate`, if any.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// What the span is.
    #[prost(string, tag = "5")]
    pub name: String,
    /// [`SpanKind`] as a number.
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    /// Start, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Its attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Whether it failed.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    /// The W3C trace flags in the low byte.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

/// `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    /// Not given.
    Unspecified = 0,
    /// Within the process.
    Internal = 1,
    /// Serving a request (the request through the proxy).
    Server = 2,
    /// Making a request (an attempt upstream).
    Client = 3,
}

/// `Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Why, for an error.
    #[prost(string, tag = "2")]
    pub message: String,
    /// [`StatusCode`] as a number.
    #[prost(enumeration = "StatusCode", tag = "3")]
    pub code: i32,
}

/// `Status.StatusCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    /// Not set: no error.
    Unset = 0,
    /// Explicitly fine.
    Ok = 1,
    /// Failed.
    Error = 2,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue`: the kinds of value Switchyard sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3")]
    pub value: Option<any_value::Value>,
}

/// `AnyValue`'s cases.
pub mod any_value {
    /// One value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// Text.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// An integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
    }
}

impl KeyValue {
    /// A text attribute.
    pub fn text(key: &str, value: impl Into<String>) -> KeyValue {
        KeyValue::of(key, any_value::Value::StringValue(value.into()))
    }

    /// An integer attribute.
    pub fn int(key: &str, value: i64) -> KeyValue {
        KeyValue::of(key, any_value::Value::IntValue(value))
    }

    /// A boolean attribute.
    pub fn flag(key: &str, value: bool) -> KeyValue {
        KeyValue::of(key, any_value::Value::BoolValue(value))
    }

    fn of(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    /// The value as text, if it is text (for tests and receivers).
    pub fn as_text(&self) -> Option<&str> {
        match self.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(n) => Some(*n),
            _ => None,
        }
    }
}

impl Span {
    /// The attribute named `key`, if present.
    pub fn attribute(&self, key: &str) -> Option<&KeyValue> {
        self.attributes.iter().find(|kv| kv.key == key)
    }
}
