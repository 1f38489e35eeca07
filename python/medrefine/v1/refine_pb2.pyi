from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_UINT32: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]

class Preset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESET_DEFAULT: _ClassVar[Preset]
    PRESET_SHIFTED: _ClassVar[Preset]
    PRESET_PAPER: _ClassVar[Preset]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    SESSION_NOT_LIVE: _ClassVar[ErrorReason]
    SESSION_CLOSED: _ClassVar[ErrorReason]
    MODEL_LOADING: _ClassVar[ErrorReason]
    UPLOAD_IDLE: _ClassVar[ErrorReason]
    UPLOAD_BUDGET: _ClassVar[ErrorReason]

class InteractionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERACTION_KIND_UNSPECIFIED: _ClassVar[InteractionKind]
    INTERACTION_KIND_REFINE: _ClassVar[InteractionKind]
    INTERACTION_KIND_ADD_CLASS: _ClassVar[InteractionKind]
    INTERACTION_KIND_RESET: _ClassVar[InteractionKind]
DTYPE_UNSPECIFIED: DType
DTYPE_UINT8: DType
DTYPE_INT8: DType
DTYPE_UINT16: DType
DTYPE_INT16: DType
DTYPE_UINT32: DType
DTYPE_INT32: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
PRESET_DEFAULT: Preset
PRESET_SHIFTED: Preset
PRESET_PAPER: Preset
ERROR_REASON_UNSPECIFIED: ErrorReason
SESSION_NOT_LIVE: ErrorReason
SESSION_CLOSED: ErrorReason
MODEL_LOADING: ErrorReason
UPLOAD_IDLE: ErrorReason
UPLOAD_BUDGET: ErrorReason
INTERACTION_KIND_UNSPECIFIED: InteractionKind
INTERACTION_KIND_REFINE: InteractionKind
INTERACTION_KIND_ADD_CLASS: InteractionKind
INTERACTION_KIND_RESET: InteractionKind

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "limits")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    limits: ServerLimits
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "class_names", "spatial_dims", "channels", "backend", "has_site")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    SPATIAL_DIMS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HAS_SITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    spatial_dims: int
    channels: int
    backend: str
    has_site: bool
    def __init__(self, name: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., spatial_dims: _Optional[int] = ..., channels: _Optional[int] = ..., backend: _Optional[str] = ..., has_site: _Optional[bool] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_image_bytes", "max_chunk_bytes", "max_sessions", "max_marks_per_call", "max_marks_per_session", "max_points_per_mark", "max_classes", "idle_session_ttl_s")
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_MARKS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    MAX_MARKS_PER_SESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_PER_MARK_FIELD_NUMBER: _ClassVar[int]
    MAX_CLASSES_FIELD_NUMBER: _ClassVar[int]
    IDLE_SESSION_TTL_S_FIELD_NUMBER: _ClassVar[int]
    max_image_bytes: int
    max_chunk_bytes: int
    max_sessions: int
    max_marks_per_call: int
    max_marks_per_session: int
    max_points_per_mark: int
    max_classes: int
    idle_session_ttl_s: float
    def __init__(self, max_image_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_sessions: _Optional[int] = ..., max_marks_per_call: _Optional[int] = ..., max_marks_per_session: _Optional[int] = ..., max_points_per_mark: _Optional[int] = ..., max_classes: _Optional[int] = ..., idle_session_ttl_s: _Optional[float] = ...) -> None: ...

class OpenSessionHeader(_message.Message):
    __slots__ = ("model", "shape", "dtype", "spacing", "affine", "session_id", "digest", "preset", "channels_last")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SPACING_FIELD_NUMBER: _ClassVar[int]
    AFFINE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_LAST_FIELD_NUMBER: _ClassVar[int]
    model: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    spacing: _containers.RepeatedScalarFieldContainer[float]
    affine: _containers.RepeatedScalarFieldContainer[float]
    session_id: str
    digest: str
    preset: Preset
    channels_last: bool
    def __init__(self, model: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., spacing: _Optional[_Iterable[float]] = ..., affine: _Optional[_Iterable[float]] = ..., session_id: _Optional[str] = ..., digest: _Optional[str] = ..., preset: _Optional[_Union[Preset, str]] = ..., channels_last: _Optional[bool] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: OpenSessionHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[OpenSessionHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id", "image_required", "resumed", "mask", "status", "spatial_shape", "features_cached", "seconds", "backend", "head_source", "head_reason", "reaches_wide", "site_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPATIAL_SHAPE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_CACHED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HEAD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_REASON_FIELD_NUMBER: _ClassVar[int]
    REACHES_WIDE_FIELD_NUMBER: _ClassVar[int]
    SITE_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    image_required: bool
    resumed: bool
    mask: MaskUpdate
    status: SessionStatus
    spatial_shape: _containers.RepeatedScalarFieldContainer[int]
    features_cached: bool
    seconds: float
    backend: str
    head_source: str
    head_reason: str
    reaches_wide: bool
    site_version: int
    def __init__(self, session_id: _Optional[str] = ..., image_required: _Optional[bool] = ..., resumed: _Optional[bool] = ..., mask: _Optional[_Union[MaskUpdate, _Mapping]] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ..., spatial_shape: _Optional[_Iterable[int]] = ..., features_cached: _Optional[bool] = ..., seconds: _Optional[float] = ..., backend: _Optional[str] = ..., head_source: _Optional[str] = ..., head_reason: _Optional[str] = ..., reaches_wide: _Optional[bool] = ..., site_version: _Optional[int] = ...) -> None: ...

class Scribble(_message.Message):
    __slots__ = ("label", "points", "radius")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    label: int
    points: _containers.RepeatedScalarFieldContainer[int]
    radius: int
    def __init__(self, label: _Optional[int] = ..., points: _Optional[_Iterable[int]] = ..., radius: _Optional[int] = ...) -> None: ...

class Click(_message.Message):
    __slots__ = ("label", "point", "radius")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    label: int
    point: _containers.RepeatedScalarFieldContainer[int]
    radius: int
    def __init__(self, label: _Optional[int] = ..., point: _Optional[_Iterable[int]] = ..., radius: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("label", "start", "stop")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    label: int
    start: _containers.RepeatedScalarFieldContainer[int]
    stop: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, label: _Optional[int] = ..., start: _Optional[_Iterable[int]] = ..., stop: _Optional[_Iterable[int]] = ...) -> None: ...

class Paint(_message.Message):
    __slots__ = ("label", "pixels")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    label: int
    pixels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, label: _Optional[int] = ..., pixels: _Optional[_Iterable[int]] = ...) -> None: ...

class Mark(_message.Message):
    __slots__ = ("scribble", "click", "box", "paint")
    SCRIBBLE_FIELD_NUMBER: _ClassVar[int]
    CLICK_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PAINT_FIELD_NUMBER: _ClassVar[int]
    scribble: Scribble
    click: Click
    box: Box
    paint: Paint
    def __init__(self, scribble: _Optional[_Union[Scribble, _Mapping]] = ..., click: _Optional[_Union[Click, _Mapping]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., paint: _Optional[_Union[Paint, _Mapping]] = ...) -> None: ...

class AddMarksRequest(_message.Message):
    __slots__ = ("session_id", "marks")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    marks: _containers.RepeatedCompositeFieldContainer[Mark]
    def __init__(self, session_id: _Optional[str] = ..., marks: _Optional[_Iterable[_Union[Mark, _Mapping]]] = ...) -> None: ...

class AddMarksResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: SessionStatus
    def __init__(self, status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class MaskDelta(_message.Message):
    __slots__ = ("base_version", "box_start", "box_stop", "bits_per_label", "data")
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BOX_START_FIELD_NUMBER: _ClassVar[int]
    BOX_STOP_FIELD_NUMBER: _ClassVar[int]
    BITS_PER_LABEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    base_version: int
    box_start: _containers.RepeatedScalarFieldContainer[int]
    box_stop: _containers.RepeatedScalarFieldContainer[int]
    bits_per_label: int
    data: bytes
    def __init__(self, base_version: _Optional[int] = ..., box_start: _Optional[_Iterable[int]] = ..., box_stop: _Optional[_Iterable[int]] = ..., bits_per_label: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class MaskUpdate(_message.Message):
    __slots__ = ("version", "delta", "fetch_required")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FETCH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    version: int
    delta: MaskDelta
    fetch_required: bool
    def __init__(self, version: _Optional[int] = ..., delta: _Optional[_Union[MaskDelta, _Mapping]] = ..., fetch_required: _Optional[bool] = ...) -> None: ...

class SessionStatus(_message.Message):
    __slots__ = ("class_names", "pending_marks", "history_length", "can_undo", "can_redo", "mask_version")
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    PENDING_MARKS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAN_UNDO_FIELD_NUMBER: _ClassVar[int]
    CAN_REDO_FIELD_NUMBER: _ClassVar[int]
    MASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    pending_marks: int
    history_length: int
    can_undo: bool
    can_redo: bool
    mask_version: int
    def __init__(self, class_names: _Optional[_Iterable[str]] = ..., pending_marks: _Optional[int] = ..., history_length: _Optional[int] = ..., can_undo: _Optional[bool] = ..., can_redo: _Optional[bool] = ..., mask_version: _Optional[int] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_id", "known_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    known_version: int
    def __init__(self, session_id: _Optional[str] = ..., known_version: _Optional[int] = ...) -> None: ...

class MaskResponse(_message.Message):
    __slots__ = ("mask", "status")
    MASK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    mask: MaskUpdate
    status: SessionStatus
    def __init__(self, mask: _Optional[_Union[MaskUpdate, _Mapping]] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class GetMaskRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class MaskHeader(_message.Message):
    __slots__ = ("version", "shape", "bits_per_label", "compressed_bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    BITS_PER_LABEL_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_BYTES_FIELD_NUMBER: _ClassVar[int]
    version: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    bits_per_label: int
    compressed_bytes: int
    def __init__(self, version: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ..., bits_per_label: _Optional[int] = ..., compressed_bytes: _Optional[int] = ...) -> None: ...

class MaskChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: MaskHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[MaskHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RefineOptions(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: bool
    def __init__(self, progress: _Optional[bool] = ...) -> None: ...

class RefineRequest(_message.Message):
    __slots__ = ("session_id", "marks", "options", "known_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    marks: _containers.RepeatedCompositeFieldContainer[Mark]
    options: RefineOptions
    known_version: int
    def __init__(self, session_id: _Optional[str] = ..., marks: _Optional[_Iterable[_Union[Mark, _Mapping]]] = ..., options: _Optional[_Union[RefineOptions, _Mapping]] = ..., known_version: _Optional[int] = ...) -> None: ...

class RefineProgress(_message.Message):
    __slots__ = ("iteration", "max_iterations", "loss", "wrong_marks")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    WRONG_MARKS_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    max_iterations: int
    loss: float
    wrong_marks: int
    def __init__(self, iteration: _Optional[int] = ..., max_iterations: _Optional[int] = ..., loss: _Optional[float] = ..., wrong_marks: _Optional[int] = ...) -> None: ...

class RefineSummary(_message.Message):
    __slots__ = ("iterations", "satisfied", "wrong_marks", "marked_pixels", "seconds", "loss_trace", "mode", "wrong_where", "wrong_where_truncated", "honoured_before", "note", "changes", "unmarked")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SATISFIED_FIELD_NUMBER: _ClassVar[int]
    WRONG_MARKS_FIELD_NUMBER: _ClassVar[int]
    MARKED_PIXELS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOSS_TRACE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WRONG_WHERE_FIELD_NUMBER: _ClassVar[int]
    WRONG_WHERE_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    HONOURED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UNMARKED_FIELD_NUMBER: _ClassVar[int]
    iterations: int
    satisfied: bool
    wrong_marks: int
    marked_pixels: int
    seconds: float
    loss_trace: _containers.RepeatedScalarFieldContainer[float]
    mode: str
    wrong_where: _containers.RepeatedScalarFieldContainer[int]
    wrong_where_truncated: bool
    honoured_before: float
    note: str
    changes: _containers.RepeatedCompositeFieldContainer[ClassChange]
    unmarked: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, iterations: _Optional[int] = ..., satisfied: _Optional[bool] = ..., wrong_marks: _Optional[int] = ..., marked_pixels: _Optional[int] = ..., seconds: _Optional[float] = ..., loss_trace: _Optional[_Iterable[float]] = ..., mode: _Optional[str] = ..., wrong_where: _Optional[_Iterable[int]] = ..., wrong_where_truncated: _Optional[bool] = ..., honoured_before: _Optional[float] = ..., note: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[ClassChange, _Mapping]]] = ..., unmarked: _Optional[_Iterable[int]] = ...) -> None: ...

class ClassChange(_message.Message):
    __slots__ = ("label", "gained_inside", "gained_outside", "lost_inside", "lost_outside")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    GAINED_INSIDE_FIELD_NUMBER: _ClassVar[int]
    GAINED_OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    LOST_INSIDE_FIELD_NUMBER: _ClassVar[int]
    LOST_OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    label: int
    gained_inside: int
    gained_outside: int
    lost_inside: int
    lost_outside: int
    def __init__(self, label: _Optional[int] = ..., gained_inside: _Optional[int] = ..., gained_outside: _Optional[int] = ..., lost_inside: _Optional[int] = ..., lost_outside: _Optional[int] = ...) -> None: ...

class RefineResponse(_message.Message):
    __slots__ = ("mask", "summary", "status")
    MASK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    mask: MaskUpdate
    summary: RefineSummary
    status: SessionStatus
    def __init__(self, mask: _Optional[_Union[MaskUpdate, _Mapping]] = ..., summary: _Optional[_Union[RefineSummary, _Mapping]] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class RefineEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: RefineProgress
    result: RefineResponse
    def __init__(self, progress: _Optional[_Union[RefineProgress, _Mapping]] = ..., result: _Optional[_Union[RefineResponse, _Mapping]] = ...) -> None: ...

class AddClassRequest(_message.Message):
    __slots__ = ("session_id", "name")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AddClassResponse(_message.Message):
    __slots__ = ("label", "status")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    label: int
    status: SessionStatus
    def __init__(self, label: _Optional[int] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("kind", "marks", "summary", "class_name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    kind: InteractionKind
    marks: _containers.RepeatedCompositeFieldContainer[Mark]
    summary: RefineSummary
    class_name: str
    def __init__(self, kind: _Optional[_Union[InteractionKind, str]] = ..., marks: _Optional[_Iterable[_Union[Mark, _Mapping]]] = ..., summary: _Optional[_Union[RefineSummary, _Mapping]] = ..., class_name: _Optional[str] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AcceptMaskRequest(_message.Message):
    __slots__ = ("session_id", "mask_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    mask_version: int
    def __init__(self, session_id: _Optional[str] = ..., mask_version: _Optional[int] = ...) -> None: ...

class AcceptMaskResponse(_message.Message):
    __slots__ = ("version", "status")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    version: SiteVersion
    status: SessionStatus
    def __init__(self, version: _Optional[_Union[SiteVersion, _Mapping]] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class SiteVersion(_message.Message):
    __slots__ = ("version", "kind", "images", "class_names", "created_at", "checked", "in_use", "reason", "checked_images", "network_dice", "site_dice")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_DICE_FIELD_NUMBER: _ClassVar[int]
    SITE_DICE_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: str
    images: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    created_at: float
    checked: bool
    in_use: bool
    reason: str
    checked_images: int
    network_dice: _containers.RepeatedScalarFieldContainer[float]
    site_dice: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[str] = ..., images: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., created_at: _Optional[float] = ..., checked: _Optional[bool] = ..., in_use: _Optional[bool] = ..., reason: _Optional[str] = ..., checked_images: _Optional[int] = ..., network_dice: _Optional[_Iterable[float]] = ..., site_dice: _Optional[_Iterable[float]] = ...) -> None: ...

class GetSiteRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetSiteResponse(_message.Message):
    __slots__ = ("model", "versions", "head_source", "head_reason", "reaches_wide")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_REASON_FIELD_NUMBER: _ClassVar[int]
    REACHES_WIDE_FIELD_NUMBER: _ClassVar[int]
    model: str
    versions: _containers.RepeatedCompositeFieldContainer[SiteVersion]
    head_source: str
    head_reason: str
    reaches_wide: bool
    def __init__(self, model: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[SiteVersion, _Mapping]]] = ..., head_source: _Optional[str] = ..., head_reason: _Optional[str] = ..., reaches_wide: _Optional[bool] = ...) -> None: ...

class RollbackSiteRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ResetSiteRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class SiteVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: SiteVersion
    def __init__(self, version: _Optional[_Union[SiteVersion, _Mapping]] = ...) -> None: ...
