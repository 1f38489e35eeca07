#include "medrefine/client/remote_session.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>

#include "mask_delta.hpp"
#include "medrefine/v1/refine.grpc.pb.h"

namespace medrefine::client {

namespace v1 = ::medrefine::v1;

namespace {

constexpr std::size_t kChunkBytes = 1 << 20;  // the proto's limit per chunk: 1 MiB

v1::DType to_proto(DType dtype) {
  switch (dtype) {
    case DType::kUint8:
      return v1::DTYPE_UINT8;
    case DType::kInt8:
      return v1::DTYPE_INT8;
    case DType::kUint16:
      return v1::DTYPE_UINT16;
    case DType::kInt16:
      return v1::DTYPE_INT16;
    case DType::kUint32:
      return v1::DTYPE_UINT32;
    case DType::kInt32:
      return v1::DTYPE_INT32;
    case DType::kFloat32:
      return v1::DTYPE_FLOAT32;
    case DType::kFloat64:
      return v1::DTYPE_FLOAT64;
  }
  throw std::invalid_argument("unknown DType");
}

v1::Preset to_proto(Preset preset) {
  switch (preset) {
    case Preset::kShifted:
      return v1::PRESET_SHIFTED;
    case Preset::kPaper:
      return v1::PRESET_PAPER;
    case Preset::kDefault:
      break;
  }
  return v1::PRESET_DEFAULT;
}

template <typename Field>
void put_coords(const std::vector<int64_t>& coords, Field* out) {
  for (int64_t c : coords) {
    if (c < std::numeric_limits<int32_t>::min() || c > std::numeric_limits<int32_t>::max()) {
      throw std::invalid_argument("coordinate " + std::to_string(c) + " does not fit in int32");
    }
    out->Add(static_cast<int32_t>(c));
  }
}

v1::Mark to_proto(const Mark& mark) {
  v1::Mark out;
  if (const auto* s = std::get_if<Scribble>(&mark)) {
    auto* m = out.mutable_scribble();
    m->set_label(s->label);
    m->set_radius(s->radius);
    for (const auto& p : s->points) put_coords(p, m->mutable_points());
  } else if (const auto* c = std::get_if<Click>(&mark)) {
    auto* m = out.mutable_click();
    m->set_label(c->label);
    m->set_radius(c->radius);
    put_coords(c->point, m->mutable_point());
  } else if (const auto* b = std::get_if<Box>(&mark)) {
    auto* m = out.mutable_box();
    m->set_label(b->label);
    put_coords(b->start, m->mutable_start());
    put_coords(b->stop, m->mutable_stop());
  } else {
    const auto& p = std::get<Paint>(mark);
    auto* m = out.mutable_paint();
    m->set_label(p.label);
    for (const auto& px : p.pixels) put_coords(px, m->mutable_pixels());
  }
  return out;
}

SessionStatus from_proto(const v1::SessionStatus& s) {
  SessionStatus out;
  out.class_names.assign(s.class_names().begin(), s.class_names().end());
  out.pending_marks = s.pending_marks();
  out.history_length = s.history_length();
  out.can_undo = s.can_undo();
  out.can_redo = s.can_redo();
  return out;
}

RefineProgress from_proto(const v1::RefineProgress& p) {
  return {p.iteration(), p.max_iterations(), p.loss(), p.wrong_marks()};
}

SiteVersion from_proto(const v1::SiteVersion& v) {
  SiteVersion out;
  out.version = v.version();
  out.kind = v.kind();
  out.images = v.images();
  out.class_names.assign(v.class_names().begin(), v.class_names().end());
  out.created_at = v.created_at();
  out.checked = v.checked();
  out.in_use = v.in_use();
  out.reason = v.reason();
  out.checked_images = v.checked_images();
  out.network_dice.assign(v.network_dice().begin(), v.network_dice().end());
  out.site_dice.assign(v.site_dice().begin(), v.site_dice().end());
  return out;
}

/// 32 random lowercase hex digits (128 bits), like Python's uuid4().hex.
std::string random_session_id() {
  std::random_device device;
  std::uniform_int_distribution<int> digit(0, 15);
  std::string id(32, '0');
  for (char& c : id) c = "0123456789abcdef"[digit(device)];
  return id;
}

/// Throws the RemoteError of a failed call, with the reason the server put in the call's
/// trailing metadata (`medrefine-reason`), if any.
void check(const grpc::Status& status, const grpc::ClientContext& ctx) {
  if (status.ok()) return;
  std::string reason;
  const auto& trailers = ctx.GetServerTrailingMetadata();
  if (const auto found = trailers.find("medrefine-reason"); found != trailers.end()) {
    reason.assign(found->second.data(), found->second.size());
  }
  throw RemoteError(status.error_code(), status.error_message(), std::move(reason));
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const ConnectOptions& options) {
  if (!options.tls && options.root_cert_pem.empty() && options.client_cert_pem.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;  // empty roots: the system's
  ssl.pem_root_certs = options.root_cert_pem;
  ssl.pem_cert_chain = options.client_cert_pem;
  ssl.pem_private_key = options.client_key_pem;
  return grpc::SslCredentials(ssl);
}

}  // namespace

struct RemoteSession::State {
  ConnectOptions options;
  std::unique_ptr<v1::Refiner::Stub> stub;
  std::string session_id;
  std::string routing_id;  // sent as x-session-id, from open() on, for session-affine balancers
  Mask mask;
  SessionStatus status;
  bool features_cached = false;
  std::string backend;
  std::string head_source;
  std::string head_reason;
  std::uint64_t site_version = 0;

  /// A context with the bearer token and a deadline `timeout` from now.
  std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds timeout) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + timeout);
    if (!options.bearer_token.empty()) {
      ctx->AddMetadata("authorization", "Bearer " + options.bearer_token);
    }
    if (!routing_id.empty()) ctx->AddMetadata("x-session-id", routing_id);
    return ctx;
  }

  void require_open() const {
    if (session_id.empty()) throw std::logic_error("RemoteSession: call open() first");
  }

  /// Brings the held mask to `update.version`: applies its delta, or downloads the whole mask.
  void apply(const v1::MaskUpdate& update);
  void download_mask();
  const Mask& mask_call(grpc::Status (v1::Refiner::Stub::*rpc)(grpc::ClientContext*,
                                                               const v1::SessionRequest&,
                                                               v1::MaskResponse*));
};

void RemoteSession::State::apply(const v1::MaskUpdate& update) {
  if (update.fetch_required()) {
    download_mask();
    if (mask.version != update.version()) {
      throw RemoteError(grpc::StatusCode::ABORTED,
                        "the mask changed while it was downloaded (version " +
                            std::to_string(mask.version) + ", expected " +
                            std::to_string(update.version()) + ")");
    }
    return;
  }
  const v1::MaskDelta& delta = update.delta();
  if (delta.base_version() != 0 && delta.base_version() != mask.version) {
    throw RemoteError(grpc::StatusCode::DATA_LOSS,
                      "mask delta against version " + std::to_string(delta.base_version()) +
                          ", the client holds version " + std::to_string(mask.version));
  }
  std::vector<int64_t> start(delta.box_start().begin(), delta.box_start().end());
  std::vector<int64_t> stop(delta.box_stop().begin(), delta.box_stop().end());
  if (delta.base_version() == 0 && start.size() == mask.shape.size()) {
    // The whole mask: the region must be all of it.
    if (std::any_of(start.begin(), start.end(), [](int64_t s) { return s != 0; }) ||
        stop != mask.shape) {
      throw RemoteError(grpc::StatusCode::DATA_LOSS, "a whole-mask update covers only part of it");
    }
  }
  std::size_t count = 1;
  for (std::size_t a = 0; a < start.size() && a < stop.size(); ++a) {
    count *= static_cast<std::size_t>(std::max<int64_t>(stop[a] - start[a], 0));
  }
  if (count > 0) {
    const auto packed =
        detail::inflate_exact(delta.data(), detail::packed_bytes(count, delta.bits_per_label()));
    detail::paste_region(packed, delta.bits_per_label(), start, stop, mask);
  }
  mask.version = update.version();
}

void RemoteSession::State::download_mask() {
  v1::GetMaskRequest request;
  request.set_session_id(session_id);
  auto ctx = context(options.call_timeout);
  auto reader = stub->GetMask(ctx.get(), request);
  v1::MaskChunk chunk;
  v1::MaskHeader header;
  bool have_header = false;
  std::string compressed;
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) {
      header = chunk.header();
      have_header = true;
      compressed.reserve(header.compressed_bytes());
    } else {
      compressed += chunk.data();
    }
  }
  check(reader->Finish(), *ctx);
  if (!have_header) throw RemoteError(grpc::StatusCode::DATA_LOSS, "GetMask sent no header");
  Mask fresh;
  fresh.shape.assign(header.shape().begin(), header.shape().end());
  std::size_t count = 1;
  for (int64_t s : fresh.shape) count *= static_cast<std::size_t>(s);
  fresh.labels.assign(count, 0);
  const auto packed =
      detail::inflate_exact(compressed, detail::packed_bytes(count, header.bits_per_label()));
  detail::paste_region(packed, header.bits_per_label(), std::vector<int64_t>(fresh.shape.size()),
                       fresh.shape, fresh);
  fresh.version = header.version();
  mask = std::move(fresh);
}

const Mask& RemoteSession::State::mask_call(grpc::Status (v1::Refiner::Stub::*rpc)(
    grpc::ClientContext*, const v1::SessionRequest&, v1::MaskResponse*)) {
  require_open();
  v1::SessionRequest request;
  request.set_session_id(session_id);
  request.set_known_version(mask.version);
  v1::MaskResponse response;
  auto ctx = context(options.call_timeout);
  check((stub.get()->*rpc)(ctx.get(), request, &response), *ctx);
  apply(response.mask());
  status = from_proto(response.status());
  return mask;
}

RemoteSession::RemoteSession(ConnectOptions options) : state_(std::make_unique<State>()) {
  auto channel = grpc::CreateChannel(options.target, credentials(options));
  state_->stub = v1::Refiner::NewStub(channel);
  state_->options = std::move(options);
}

RemoteSession::~RemoteSession() = default;
RemoteSession::RemoteSession(RemoteSession&&) noexcept = default;
RemoteSession& RemoteSession::operator=(RemoteSession&&) noexcept = default;

std::vector<ModelInfo> RemoteSession::list_models() {
  v1::ListModelsResponse response;
  auto ctx = state_->context(state_->options.call_timeout);
  check(state_->stub->ListModels(ctx.get(), v1::ListModelsRequest(), &response), *ctx);
  std::vector<ModelInfo> models;
  for (const auto& m : response.models()) {
    models.push_back({m.name(),
                      {m.class_names().begin(), m.class_names().end()},
                      m.spatial_dims(),
                      m.channels(),
                      m.backend(),
                      m.has_site()});
  }
  return models;
}

const Mask& RemoteSession::open(const std::string& model, const Image& image,
                                const OpenOptions& options) {
  std::size_t expected = itemsize(image.dtype);
  for (int64_t s : image.shape) {
    if (s < 1) throw std::invalid_argument("every image axis needs at least one pixel");
    expected *= static_cast<std::size_t>(s);
  }
  if (image.data.size() != expected) {
    throw std::invalid_argument("image data holds " + std::to_string(image.data.size()) +
                                " bytes, its shape and dtype need " + std::to_string(expected));
  }
  v1::OpenSessionRequest header;
  auto* h = header.mutable_header();
  h->set_model(model);
  for (int64_t s : image.shape) h->add_shape(static_cast<std::uint32_t>(s));
  h->set_dtype(to_proto(image.dtype));
  for (double s : image.spacing) h->add_spacing(s);
  for (double a : image.affine) h->add_affine(a);
  // The id is chosen here, as the Python client does, so that even the upload carries it.
  const std::string id = options.session_id.empty() ? random_session_id() : options.session_id;
  h->set_session_id(id);
  h->set_preset(to_proto(options.preset));
  state_->routing_id = id;

  v1::OpenSessionResponse response;
  auto ctx = state_->context(state_->options.slow_call_timeout);
  auto writer = state_->stub->OpenSession(ctx.get(), &response);
  // A write fails once the server has answered early (or failed): Finish() says which.
  bool sending = writer->Write(header);
  v1::OpenSessionRequest chunk;
  for (std::size_t at = 0; sending && at < image.data.size(); at += kChunkBytes) {
    const std::size_t n = std::min(kChunkBytes, image.data.size() - at);
    chunk.set_chunk(reinterpret_cast<const char*>(image.data.data()) + at, n);
    sending = writer->Write(chunk);
  }
  if (sending) writer->WritesDone();
  check(writer->Finish(), *ctx);
  if (response.image_required()) {
    throw RemoteError(grpc::StatusCode::FAILED_PRECONDITION,
                      "the server asked for the image although it was sent");
  }
  State& s = *state_;
  s.session_id = response.session_id();
  s.mask = Mask();
  s.mask.shape.assign(response.spatial_shape().begin(), response.spatial_shape().end());
  std::size_t pixels = 1;
  for (int64_t n : s.mask.shape) pixels *= static_cast<std::size_t>(n);
  s.mask.labels.assign(pixels, 0);
  s.apply(response.mask());
  s.status = from_proto(response.status());
  s.features_cached = response.features_cached();
  s.backend = response.backend();
  s.head_source = response.head_source();
  s.head_reason = response.head_reason();
  s.site_version = response.site_version();
  return s.mask;
}

void RemoteSession::add(const Mark& mark) {
  state_->require_open();
  v1::AddMarksRequest request;
  request.set_session_id(state_->session_id);
  *request.add_marks() = to_proto(mark);
  v1::AddMarksResponse response;
  auto ctx = state_->context(state_->options.call_timeout);
  check(state_->stub->AddMarks(ctx.get(), request, &response), *ctx);
  state_->status = from_proto(response.status());
}

RefineResult RemoteSession::refine(const std::vector<Mark>& marks,
                                   const std::function<void(const RefineProgress&)>& on_progress) {
  State& s = *state_;
  s.require_open();
  v1::RefineRequest request;
  request.set_session_id(s.session_id);
  for (const Mark& m : marks) *request.add_marks() = to_proto(m);
  request.mutable_options()->set_progress(true);
  request.set_known_version(s.mask.version);
  auto ctx = s.context(s.options.slow_call_timeout);
  auto reader = s.stub->Refine(ctx.get(), request);
  RefineResult result;
  v1::RefineEvent event;
  v1::RefineResponse final_response;
  bool have_result = false;
  while (reader->Read(&event)) {
    if (event.has_progress()) {
      result.progress.push_back(from_proto(event.progress()));
      if (on_progress) on_progress(result.progress.back());
    } else if (event.has_result()) {
      final_response = event.result();
      have_result = true;
    }
  }
  check(reader->Finish(), *ctx);
  if (!have_result) throw RemoteError(grpc::StatusCode::DATA_LOSS, "Refine sent no result");
  s.apply(final_response.mask());
  s.status = from_proto(final_response.status());
  const v1::RefineSummary& summary = final_response.summary();
  result.iterations = summary.iterations();
  result.satisfied = summary.satisfied();
  result.wrong_marks = summary.wrong_marks();
  result.marked_pixels = summary.marked_pixels();
  result.seconds = summary.seconds();
  result.loss_trace.assign(summary.loss_trace().begin(), summary.loss_trace().end());
  result.mode = summary.mode();
  return result;
}

const Mask& RemoteSession::undo() { return state_->mask_call(&v1::Refiner::Stub::Undo); }
const Mask& RemoteSession::redo() { return state_->mask_call(&v1::Refiner::Stub::Redo); }
const Mask& RemoteSession::reset() { return state_->mask_call(&v1::Refiner::Stub::Reset); }

std::uint32_t RemoteSession::add_class(const std::string& name) {
  state_->require_open();
  v1::AddClassRequest request;
  request.set_session_id(state_->session_id);
  request.set_name(name);
  v1::AddClassResponse response;
  auto ctx = state_->context(state_->options.call_timeout);
  check(state_->stub->AddClass(ctx.get(), request, &response), *ctx);
  state_->status = from_proto(response.status());
  return response.label();
}

SiteVersion RemoteSession::accept() {
  state_->require_open();
  v1::AcceptMaskRequest request;
  request.set_session_id(state_->session_id);
  request.set_mask_version(state_->mask.version);
  v1::AcceptMaskResponse response;
  auto ctx = state_->context(state_->options.slow_call_timeout);
  check(state_->stub->AcceptMask(ctx.get(), request, &response), *ctx);
  state_->status = from_proto(response.status());
  return from_proto(response.version());
}

SiteReport RemoteSession::get_site(const std::string& model) {
  v1::GetSiteRequest request;
  request.set_model(model);
  v1::GetSiteResponse response;
  auto ctx = state_->context(state_->options.call_timeout);
  check(state_->stub->GetSite(ctx.get(), request, &response), *ctx);
  SiteReport report;
  for (const auto& v : response.versions()) report.versions.push_back(from_proto(v));
  report.head_source = response.head_source();
  report.head_reason = response.head_reason();
  return report;
}

const Mask& RemoteSession::get_mask() {
  state_->require_open();
  state_->download_mask();
  return state_->mask;
}

void RemoteSession::close() {
  state_->require_open();
  v1::SessionRequest request;
  request.set_session_id(state_->session_id);
  v1::CloseSessionResponse response;
  auto ctx = state_->context(state_->options.call_timeout);
  check(state_->stub->CloseSession(ctx.get(), request, &response), *ctx);
  state_->session_id.clear();
  state_->routing_id.clear();
  state_->mask = Mask();
  state_->status = SessionStatus();
}

const Mask& RemoteSession::mask() const { return state_->mask; }
const SessionStatus& RemoteSession::status() const { return state_->status; }
const std::string& RemoteSession::session_id() const { return state_->session_id; }
bool RemoteSession::features_cached() const { return state_->features_cached; }
const std::string& RemoteSession::backend() const { return state_->backend; }
const std::string& RemoteSession::head_source() const { return state_->head_source; }
const std::string& RemoteSession::head_reason() const { return state_->head_reason; }
std::uint64_t RemoteSession::site_version() const { return state_->site_version; }

}  // namespace medrefine::client
