// medrefine's C++ client: one interactive refinement session on a medrefine server
// (`medrefine serve`), over the gRPC API of proto/medrefine/v1/refine.proto.
//
// Conventions, the same as the server's and the Python package's:
// - Arrays are C order. Spatial axes are in array order: 2D (y, x), 3D (z, y, x); an image may
//   carry a leading channel axis, (C, y, x) or (C, z, y, x).
// - Coordinates are 0-based integer pixel indices in that order; radii are in pixels.
// - Pixel spacing is in millimetres, one value per spatial axis, same order.
// - Labels are class indices 0..K-1, 0 = background.
// - Multi-byte pixel values are little-endian (the host order on x86-64 and AArch64).
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace medrefine::client {

/// A failed call: the gRPC status the server (or the channel) answered with, and its message.
/// A reply that breaks the protocol (e.g. a mask delta for a version the client does not hold)
/// is reported as `DATA_LOSS`.
class RemoteError : public std::runtime_error {
 public:
  RemoteError(grpc::StatusCode code, const std::string& message, std::string reason = {});

  /// The gRPC status code, e.g. `grpc::StatusCode::NOT_FOUND`.
  grpc::StatusCode code() const { return code_; }
  /// The status code's canonical name, e.g. "NOT_FOUND", "UNAUTHENTICATED".
  const char* code_name() const;
  /// The server's message naming the problem (what() is "CODE_NAME: message").
  const std::string& message() const { return message_; }
  /// The server's machine-readable reason, from the trailing metadata `medrefine-reason` (a
  /// `medrefine.v1.ErrorReason` name, e.g. "SESSION_NOT_LIVE": open() the session again by its
  /// id; "SESSION_CLOSED": it cannot be reopened); empty when the server gave none.
  const std::string& reason() const { return reason_; }

 private:
  grpc::StatusCode code_;
  std::string message_;
  std::string reason_;
};

/// The canonical upper-case name of a gRPC status code ("OK", "INVALID_ARGUMENT", ...).
const char* status_code_name(grpc::StatusCode code);

/// Element type of image pixels.
enum class DType { kUint8, kInt8, kUint16, kInt16, kUint32, kInt32, kFloat32, kFloat64 };

/// Bytes per element of `dtype` (1, 2, 4 or 8).
std::size_t itemsize(DType dtype);

/// An image to refine on.
struct Image {
  /// Array shape: (y, x), (C, y, x), (z, y, x) or (C, z, y, x); every entry >= 1.
  std::vector<int64_t> shape;
  /// Element type of `data`.
  DType dtype = DType::kUint8;
  /// Pixels in C order, little-endian: prod(shape) * itemsize(dtype) bytes.
  std::vector<std::uint8_t> data;
  /// Pixel spacing in mm per spatial axis (optional; empty = unknown).
  std::vector<double> spacing;
  /// 4x4 index-to-world matrix, row-major, 16 values (optional; empty = unknown).
  std::vector<double> affine;
};

/// A polyline of class `label` through `points` ((y, x) or (z, y, x) each), painted with a
/// ball of `radius` pixels (0 = the line's pixels only).
struct Scribble {
  std::uint32_t label = 0;
  std::vector<std::vector<int64_t>> points;
  std::uint32_t radius = 1;
};

/// A disk (2D) or ball (3D) of class `label` centred at `point` ((y, x) or (z, y, x)),
/// `radius` in pixels.
struct Click {
  std::uint32_t label = 0;
  std::vector<int64_t> point;
  std::uint32_t radius = 2;
};

/// "Class `label` lies inside this box": `start` inclusive, `stop` exclusive, per axis,
/// (y, x) or (z, y, x).
struct Box {
  std::uint32_t label = 0;
  std::vector<int64_t> start;
  std::vector<int64_t> stop;
};

/// Pixels of class `label` a viewer has already rasterised: (y, x) or (z, y, x) each.
struct Paint {
  std::uint32_t label = 0;
  std::vector<std::vector<int64_t>> pixels;
};

/// One clinician mark.
using Mark = std::variant<Scribble, Click, Box, Paint>;

/// The session's label mask as the client holds it.
struct Mask {
  /// Spatial shape, (y, x) or (z, y, x).
  std::vector<int64_t> shape;
  /// One label per pixel, C order; prod(shape) entries.
  std::vector<std::uint16_t> labels;
  /// The server's version of this mask (1 = the network's own mask; +1 per change).
  std::uint64_t version = 0;
};

/// What the client mirrors of the server's session after each call.
struct SessionStatus {
  /// One name per class label, index = label; [0] is the background.
  std::vector<std::string> class_names;
  /// Marks queued for the next refine.
  std::uint32_t pending_marks = 0;
  /// Interactions in the session's history.
  std::uint32_t history_length = 0;
  bool can_undo = false;
  bool can_redo = false;
};

/// A model the server serves.
struct ModelInfo {
  std::string name;                      ///< e.g. "nuclei-unet2d"
  std::vector<std::string> class_names;  ///< index = label
  std::uint32_t spatial_dims = 0;        ///< 2 or 3
  std::uint32_t channels = 0;            ///< image channels the network expects
  std::string backend;                   ///< what runs the backbone, e.g. "torch-cpu"
  bool has_site = false;                 ///< the server keeps a site for it (`--site-dir`)
};

/// One version of a model's site (`medrefine serve --site-dir`): what RemoteSession::accept
/// made, as the Python `medrefine.site.SiteVersion` describes it.
struct SiteVersion {
  std::uint64_t version = 0;             ///< its number: 1, 2, ...; newer is larger
  std::string kind;                      ///< "accept", "rollback" or "reset"
  std::uint32_t images = 0;              ///< accepted images it holds
  std::vector<std::string> class_names;  ///< the site's classes, index = label
  double created_at = 0.0;               ///< seconds since the Unix epoch (UTC)
  bool checked = false;                  ///< its held-out check has run
  bool in_use = false;                   ///< new sessions start from its head (check passed)
  std::string reason;                    ///< the check's verdict in a sentence
  std::uint32_t checked_images = 0;      ///< accepted images the check held out
  std::vector<double> network_dice;      ///< per held-out image: the network head's Dice, [0, 1]
  std::vector<double> site_dice;         ///< per held-out image: the site head's Dice, [0, 1]
};

/// A model's site: its kept versions, oldest first, and how a session opened now starts.
struct SiteReport {
  std::vector<SiteVersion> versions;  ///< the last is the site's state
  std::string head_source;            ///< "network" or "site vN"
  std::string head_reason;            ///< why, and whether refinement reaches wide
};

/// One gradient step of a refine, streamed before the step is taken.
struct RefineProgress {
  std::uint32_t iteration = 0;       ///< 0-based index of the step
  std::uint32_t max_iterations = 0;  ///< the most steps this refine may take
  double loss = 0.0;                 ///< objective value (NaN before the first evaluation)
  int64_t wrong_marks = -1;          ///< drawn pixels still predicted wrongly (-1: unknown)
};

/// Outcome of RemoteSession::refine; the new mask is RemoteSession::mask().
struct RefineResult {
  std::uint32_t iterations = 0;          ///< gradient steps taken
  bool satisfied = false;                ///< the network itself honours every drawn pixel
  std::uint32_t wrong_marks = 0;         ///< drawn pixels the network still predicts wrongly
  std::uint32_t marked_pixels = 0;       ///< drawn pixels considered
  double seconds = 0.0;                  ///< server wall time of the refinement, s
  std::vector<double> loss_trace;        ///< objective value at every iteration
  std::string mode;                      ///< "pointwise", "crop" or "full"
  std::vector<RefineProgress> progress;  ///< the progress events received, in order
};

/// Refinement settings, fixed for the life of a session.
enum class Preset {
  kDefault,  ///< medrefine.RefineConfig()
  kShifted,  ///< RefineConfig.shifted(): images far from the network's training data
  kPaper,    ///< RefineConfig.paper(): the published method's settings
};

/// How to reach the server.
struct ConnectOptions {
  /// "HOST:PORT" (any gRPC target string).
  std::string target;
  /// Sent as `authorization: Bearer <token>` on every call when not empty.
  std::string bearer_token;
  /// PEM root certificates: when not empty the channel uses TLS and trusts these roots.
  std::string root_cert_pem;
  /// Use TLS with the system's root certificates (implied by any of the PEM fields).
  bool tls = false;
  /// PEM client certificate chain and private key, for a server that requires mutual TLS.
  std::string client_cert_pem;
  std::string client_key_pem;
  /// Deadline of each call, except open() and refine(), which use `slow_call_timeout`.
  std::chrono::milliseconds call_timeout{30000};
  /// Deadline of open() (upload + backbone) and refine().
  std::chrono::milliseconds slow_call_timeout{600000};
};

/// Options of RemoteSession::open.
struct OpenOptions {
  /// Refinement settings of a new session (ignored when reopening).
  Preset preset = Preset::kDefault;
  /// Session id to use or reopen (1-128 of [A-Za-z0-9._-]); empty: a random one. Every call
  /// of the session carries it as `x-session-id` metadata, for session-affine load balancers.
  std::string session_id;
};

/// One refinement session on a medrefine server: the methods of the Python `medrefine.Session`,
/// each one gRPC call. open() first; every call made before it, or after close(), throws
/// std::logic_error. A failed call throws RemoteError and leaves the session as it was.
///
/// The client keeps the current mask: every call that changes it brings back only the box of
/// pixels that changed since the version held, which is applied here. Not thread-safe: use one
/// RemoteSession per thread (sessions on one server run in parallel).
class RemoteSession {
 public:
  /// Creates the channel; no call is made until the first method.
  explicit RemoteSession(ConnectOptions options);
  ~RemoteSession();
  RemoteSession(RemoteSession&&) noexcept;
  RemoteSession& operator=(RemoteSession&&) noexcept;
  RemoteSession(const RemoteSession&) = delete;
  RemoteSession& operator=(const RemoteSession&) = delete;

  /// The models the server serves.
  std::vector<ModelInfo> list_models();

  /// Uploads `image` (in chunks of at most 1 MiB) and opens a session on it with `model`;
  /// returns the network's own mask. Reopening an id the server knows returns that session's
  /// current mask.
  const Mask& open(const std::string& model, const Image& image, const OpenOptions& options = {});

  /// Checks and queues one mark for the next refine (journaled by the server).
  void add(const Mark& mark);

  /// Queues `marks` (may be empty), fine-tunes the head on every mark of the session and applies
  /// the new mask; `on_progress`, when set, is called for every progress event as it arrives.
  RefineResult refine(const std::vector<Mark>& marks = {},
                      const std::function<void(const RefineProgress&)>& on_progress = {});

  /// Goes back one interaction (queued marks are dropped); FAILED_PRECONDITION if none.
  const Mask& undo();
  /// Re-applies the last undone interaction; FAILED_PRECONDITION if none.
  const Mask& redo();
  /// Back to the network's own mask, no marks, the pre-trained head; undoable.
  const Mask& reset();
  /// Adds a class the network never learned; returns its label (the previous class count).
  std::uint32_t add_class(const std::string& name);

  /// Records the mask held as the clinician's answer for this image: the server's site of the
  /// model keeps a sample of it and refits (about a second). The session is unchanged.
  /// FAILED_PRECONDITION when the server keeps no site for the model (`--site-dir`), when marks
  /// are queued (refine first), or when the mask held is not the session's current one.
  SiteVersion accept();

  /// The site of `model` on the server (FAILED_PRECONDITION if it keeps none).
  SiteReport get_site(const std::string& model);

  /// Downloads the whole current mask (replacing the one held) and returns it.
  const Mask& get_mask();
  /// Forgets the session on the server; the object can open() again afterwards.
  void close();

  /// The mask held (the latest one any call brought back).
  const Mask& mask() const;
  /// The session's classes, queue and undo state after the latest call.
  const SessionStatus& status() const;
  /// The session's id ("" before open()).
  const std::string& session_id() const;
  /// Whether the latest open() found the image's features in the server's cache.
  bool features_cached() const;
  /// What ran the backbone for the latest open(), e.g. "torch-cpu".
  const std::string& backend() const;
  /// Which head the latest open() started from: "network" or "site vN".
  const std::string& head_source() const;
  /// Why that head, and whether refinement reaches wide, in a sentence or two.
  const std::string& head_reason() const;
  /// The site version the session started from (0: none).
  std::uint64_t site_version() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace medrefine::client
