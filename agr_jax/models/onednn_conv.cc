// oneDNN convolutions as XLA FFI custom calls (CPU): forward, input gradient, weight gradient.
// Grouped and depthwise convolutions too (groups = input channels / the kernel's input
// channels), which XLA:CPU runs slowest of all (jax issues 13800, 23713).
//
// Why: XLA:CPU's own convolution runs 2-7x below oneDNN's (what PyTorch calls) on this
// project's layers, the weight gradient worst of all. Layouts are JAX's: activations NHWC,
// kernels HWIO, float32 or bfloat16. Built on first use by agr_jax/models/onednn_conv.py.
//
// Primitives are created once per shape and cached; each call runs with its own scratchpad,
// so the same primitive may run on several XLA devices at once.

#include <omp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;

namespace {

// Geometry of one convolution: N, H, W, C (input), O, KH, KW, Ho, Wo, strides, pads, groups,
// threads.
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t>;

struct Geometry {
  int64_t n, h, w, c, o, kh, kw, ho, wo, sh, sw, pt, pb, pl, pr, g, threads;
  memory::data_type type;  // of every operand: f32, or bf16 (float32 accumulation inside)

  Key key(int kind) const {
    return {kind, static_cast<int>(type), n, h, w, c, o, kh, kw, ho, wo, sh, sw, pt, pb, pl, pr,
            g, threads};
  }
  memory::desc src() const { return {{n, c, h, w}, type, Tag::nhwc}; }
  // JAX's HWIO kernel. Grouped: [KH, KW, C/G, O] with output channel g * O/G + j, which is
  // oneDNN's (G, O/G, C/G, KH, KW) at these strides.
  memory::desc weights() const {
    if (g == 1) return {{o, c, kh, kw}, type, Tag::hwio};
    return {{g, o / g, c / g, kh, kw}, type, {o / g, 1, o, kw * (c / g) * o, (c / g) * o}};
  }
  memory::desc dst() const { return {{n, o, ho, wo}, type, Tag::nhwc}; }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims pad_l() const { return {pt, pl}; }
  memory::dims pad_r() const { return {pb, pr}; }
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

memory::desc AnyWeights(const Geometry& g) {
  if (g.g == 1) return {{g.o, g.c, g.kh, g.kw}, g.type, Tag::any};
  return {{g.g, g.o / g.g, g.c / g.g, g.kh, g.kw}, g.type, Tag::any};
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
          g.src(), AnyWeights(g), g.dst(), g.strides(), g.pad_l(), g.pad_r(), UserScratchpad()};
}

// A primitive plus, when it wants blocked weights (it picks their layout: `Tag::any`, which
// runs the backward passes ~1.5x faster than plain HWIO), the reorder between the two.
struct Cached {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  memory::desc weights;  // the primitive's (diff_)weights layout
  std::unique_ptr<dnnl::reorder> reorder;  // HWIO -> weights, or weights -> HWIO (kBackwardWeights)
};

enum Kind { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

template <typename Backward>
typename Backward::primitive_desc BackwardDesc(
    const Geometry& g, const dnnl::convolution_forward::primitive_desc& hint) {
  return {Engine(), dnnl::algorithm::convolution_direct, g.src(), AnyWeights(g), g.dst(),
          g.strides(), g.pad_l(), g.pad_r(), hint, UserScratchpad()};
}

std::unique_ptr<Cached> Make(const Geometry& g, Kind kind) {
  auto forward = ForwardDesc(g);
  std::unique_ptr<Cached> made(new Cached);
  if (kind == kForward) {
    made->primitive = dnnl::convolution_forward(forward);
    made->scratchpad = forward.scratchpad_desc();
    made->weights = forward.weights_desc();
  } else if (kind == kBackwardData) {
    auto pd = BackwardDesc<dnnl::convolution_backward_data>(g, forward);
    made->primitive = dnnl::convolution_backward_data(pd);
    made->scratchpad = pd.scratchpad_desc();
    made->weights = pd.weights_desc();
  } else {
    auto pd = BackwardDesc<dnnl::convolution_backward_weights>(g, forward);
    made->primitive = dnnl::convolution_backward_weights(pd);
    made->scratchpad = pd.scratchpad_desc();
    made->weights = pd.diff_weights_desc();
  }
  if (made->weights != g.weights()) {
    const bool to_user = kind == kBackwardWeights;
    made->reorder.reset(new dnnl::reorder(dnnl::reorder::primitive_desc(
        Engine(), to_user ? made->weights : g.weights(), Engine(),
        to_user ? g.weights() : made->weights)));
  }
  return made;
}

// Creating a primitive costs milliseconds (JIT code generation): once per shape and kind.
Cached& Lookup(const Geometry& g, Kind kind) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Cached>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[g.key(kind)];
  if (!slot) slot = Make(g, kind);
  return *slot;
}

uint8_t* Grow(std::vector<uint8_t>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// Runs `body`, turning every C++ exception into an FFI error (a Python exception): one that
// escaped an FFI handler would abort the whole process. oneDNN throws dnnl::error; the
// primitive cache and the scratch buffers can throw std::bad_alloc.
template <typename Body>
ffi::Error Guarded(Body&& body) {
  try {
    return body();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  } catch (const std::bad_alloc& e) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                      std::string("oneDNN conv: out of memory (") + e.what() + ")");
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN conv: ") + e.what());
  } catch (...) {
    return ffi::Error(ffi::ErrorCode::kUnknown, "oneDNN conv: unknown C++ exception");
  }
}

// `weights` is the HWIO buffer: read (forward, backward data) or written (backward weights).
ffi::Error Run(const Geometry& g, Kind kind, void* weights,
               std::unordered_map<int, void*> activations) {
  return Guarded([&]() -> ffi::Error {
    if (g.threads > 0) omp_set_num_threads(static_cast<int>(g.threads));
    Cached& cached = Lookup(g, kind);
    thread_local std::vector<uint8_t> scratch, blocked;
    dnnl::stream stream(Engine());
    memory user_weights(g.weights(), Engine(), weights);
    memory kernel_weights = user_weights;
    if (cached.reorder) {
      kernel_weights = memory(cached.weights, Engine(),
                              Grow(blocked, cached.weights.get_size()));
      if (kind != kBackwardWeights) cached.reorder->execute(stream, user_weights, kernel_weights);
    }
    std::unordered_map<int, memory> args;
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(cached.scratchpad, Engine(),
                                             Grow(scratch, cached.scratchpad.get_size())));
    args.emplace(kind == kBackwardWeights ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS,
                 kernel_weights);
    for (auto& [arg, ptr] : activations) {
      const bool is_src = arg == DNNL_ARG_SRC || arg == DNNL_ARG_DIFF_SRC;
      args.emplace(arg, memory(is_src ? g.src() : g.dst(), Engine(), ptr));
    }
    cached.primitive.execute(stream, args);
    if (cached.reorder && kind == kBackwardWeights) {
      cached.reorder->execute(stream, kernel_weights, user_weights);
    }
    stream.wait();
    return ffi::Error::Success();
  });
}

// Test hook (tests/test_onednn_conv.py): throws the exception `which` names through
// `Guarded`, as a failing convolution would: 0 dnnl::error, 1 std::bad_alloc,
// 2 std::runtime_error, 3 a non-std type. `out` is never written.
ffi::Error ThrowForTest(ffi::Result<ffi::AnyBuffer> out, int64_t which) {
  return Guarded([&]() -> ffi::Error {
    switch (which) {
      case 0: throw dnnl::error(dnnl_out_of_memory, "test: dnnl::error");
      case 1: throw std::bad_alloc();
      case 2: throw std::runtime_error("test: std::runtime_error");
      default: throw which;
    }
  });
}

// x: [N, H, W, C] (NHWC); w: [KH, KW, C/G, O] (HWIO); y: [N, Ho, Wo, O]; all one dtype.
ffi::ErrorOr<Geometry> MakeGeometry(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w,
                                    const ffi::AnyBuffer& y, ffi::Span<const int64_t> strides,
                                    ffi::Span<const int64_t> padding, int64_t threads) {
  const auto type = x.element_type();
  if (w.element_type() != type || y.element_type() != type ||
      (type != ffi::DataType::F32 && type != ffi::DataType::BF16)) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("oneDNN conv: operands must all be float32 or bfloat16"));
  }
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y.dimensions();
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4 || strides.size() != 2 ||
      padding.size() != 4) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("oneDNN conv: expected 4-D NHWC/HWIO operands"));
  }
  // Groups: the input's channels over the kernel's; each group's outputs from its inputs.
  if (wd[2] < 1 || xd[3] % wd[2] != 0 || wd[3] % (xd[3] / wd[2]) != 0) {
    return ffi::Unexpected(ffi::Error::InvalidArgument(
        "oneDNN conv: kernel input channels must divide the input's, and the groups the "
        "output channels"));
  }
  return Geometry{xd[0], xd[1], xd[2], xd[3], wd[3], wd[0], wd[1], yd[1], yd[2],
                  strides[0], strides[1], padding[0], padding[1], padding[2], padding[3],
                  xd[3] / wd[2], threads,
                  type == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16};
}

// One handler per kind. Inputs a, b: (x, w) forward, (dy, w) backward data, (x, dy) backward
// weights; `out` is y, dx or dw.
template <Kind kind>
ffi::Error Convolution(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                       int64_t threads) {
  const ffi::AnyBuffer& x = kind == kBackwardData ? *out : a;
  const ffi::AnyBuffer& w = kind == kBackwardWeights ? *out : b;
  const ffi::AnyBuffer& y = kind == kForward ? *out : kind == kBackwardData ? a : b;
  auto g = MakeGeometry(x, w, y, strides, padding, threads);
  if (g.has_error()) return g.error();
  const int x_arg = kind == kBackwardData ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC;
  const int y_arg = kind == kForward ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST;
  return Run(*g, kind, w.untyped_data(), {{x_arg, x.untyped_data()}, {y_arg, y.untyped_data()}});
}

}  // namespace

#define AGR_CONV_HANDLER(name, kind)                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, Convolution<kind>,                           \
                                ffi::Ffi::Bind()                                   \
                                    .Arg<ffi::AnyBuffer>()                         \
                                    .Arg<ffi::AnyBuffer>()                         \
                                    .Ret<ffi::AnyBuffer>()                         \
                                    .Attr<ffi::Span<const int64_t>>("strides")     \
                                    .Attr<ffi::Span<const int64_t>>("padding")     \
                                    .Attr<int64_t>("threads"));

AGR_CONV_HANDLER(AgrOnednnConvForward, kForward)
AGR_CONV_HANDLER(AgrOnednnConvBackwardData, kBackwardData)
AGR_CONV_HANDLER(AgrOnednnConvBackwardWeights, kBackwardWeights)

XLA_FFI_DEFINE_HANDLER_SYMBOL(AgrOnednnThrowForTest, ThrowForTest,
                              ffi::Ffi::Bind().Ret<ffi::AnyBuffer>().Attr<int64_t>("which"));
