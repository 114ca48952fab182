// The parameters of analog::device_chip (csrc/device_chip.cpp): the model and converter
// encodings of runtime/chip_codec.py read into structs, with every factor that depends on the
// read time precomputed.
#pragma once

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "rng.h"

namespace analog {
namespace devchip {

constexpr int kBatch = 2 * kLanes;   // elements per Philox batch (per device and stream)
constexpr int kChunk = 4 * kBatch;   // elements per step of the kernel's loops
constexpr float kZeroClip = 1e-7f;  // aihwkit's floor of max|W| (and of g / g_max in logs)
constexpr float kLog10e = 0.434294481903251828f;

enum ModelKind { kStateIndependent = 0, kCustomDrift = 1, kHermes = 2, kWan2022 = 3, kCmo = 4 };
enum ConverterKind { kSinglePair = 0, kNPair = 1, kCustomPair = 2, kSingleDevice = 3 };

// Reads an encoded parameter list front to back (layouts: runtime/chip_codec.py).
struct Reader {
  c10::ArrayRef<double> p;
  size_t pos = 0;
  const char* what;
  double one() {
    TORCH_CHECK(pos < p.size(), "analog::device_chip: ", what, " parameters too short");
    return p[pos++];
  }
  std::vector<float> take(int64_t n) {
    TORCH_CHECK(n >= 0 && pos + static_cast<size_t>(n) <= p.size(), "analog::device_chip: ",
                what, " parameters too short");
    std::vector<float> out(p.begin() + pos, p.begin() + pos + n);
    pos += static_cast<size_t>(n);
    return out;
  }
  std::vector<float> counted() { return take(static_cast<int64_t>(one())); }
  void done() const {
    TORCH_CHECK(pos == p.size(), "analog::device_chip: ", what, " parameters too long");
  }
};

// A model resolved for one read at t: every time-dependent factor precomputed.
struct Model {
  int kind = 0;
  float g_norm = 1.0f;           // polynomials and relative conductances divide by it
  float prog_factor = 1.0f;      // programming std = poly(g / g_norm) * prog_factor
  std::vector<float> coeff;      // programming polynomial (lowest order first)
  bool drift = false;            // t > 0 (power-law drift / relaxation / Wan's read)
  bool read = false;             // per-read randoms drawn
  float drift_scale = 1.0f, log_drift = 0.0f;   // PCM family: nu scale, log((t + t_0) / t_0)
  float nu_mean = 0.0f, nu_std = 0.0f;          // StateIndependent
  std::vector<float> tab_g, tab_mean, tab_std;  // CustomDrift's drift table
  int num_devices = 2;                          // Hermes fits
  float read_factor = 0.0f;  // read_noise_scale * sqrt(log((t + t_0 + t_read) / (2 t_read)))
  std::vector<float> coeff_read;  // Wan: the polynomial of the read time
  float g_min = 0.0f, g_max = 0.0f, shift = 0.0f, relax_std = 0.0f;  // CMO
};

inline float log_time_factor(double t, double t_read) {
  return static_cast<float>(std::sqrt(std::log((t + t_read) / (2.0 * t_read))));
}

inline Model parse_model(int64_t kind, c10::ArrayRef<double> params, double t, bool read) {
  Model m;
  m.kind = static_cast<int>(kind);
  m.drift = t > 0.0;
  m.read = read;
  Reader r{params, 0, "model"};
  switch (kind) {
    case kStateIndependent: {
      m.g_norm = r.one();
      m.prog_factor = r.one();
      m.nu_mean = r.one();
      m.nu_std = r.one();
      m.drift_scale = r.one();
      const double t_0 = r.one(), read_scale = r.one(), t_read = r.one();
      m.coeff = r.counted();
      m.log_drift = m.drift ? static_cast<float>(std::log((t + t_0) / t_0)) : 0.0f;
      // read std relative to |g_d|: log factor / g_norm
      m.read_factor = static_cast<float>(read_scale) * log_time_factor(t + t_0, t_read) /
                      m.g_norm;
      break;
    }
    case kCustomDrift:
    case kHermes: {
      m.g_norm = r.one();
      const double ref = r.one();
      if (kind == kHermes) m.num_devices = static_cast<int>(r.one());
      const double prog = r.one();
      m.drift_scale = r.one();
      const double t_0 = r.one(), read_scale = r.one(), t_read = r.one();
      m.coeff = r.counted();
      if (kind == kCustomDrift) {
        m.tab_g = r.counted();
        m.tab_mean = r.take(static_cast<int64_t>(m.tab_g.size()));
        m.tab_std = r.take(static_cast<int64_t>(m.tab_g.size()));
        TORCH_CHECK(m.tab_g.size() >= 2, "analog::device_chip: drift table needs 2 points");
      }
      TORCH_CHECK(m.num_devices == 1 || m.num_devices == 2,
                  "analog::device_chip: Hermes num_devices must be 1 or 2");
      m.prog_factor = static_cast<float>(prog * m.g_norm / ref);
      m.log_drift = m.drift ? static_cast<float>(std::log((t + t_0) / t_0)) : 0.0f;
      m.read_factor = static_cast<float>(read_scale) * log_time_factor(t + t_0, t_read);
      break;
    }
    case kWan2022: {
      m.g_norm = r.one();
      const double ref = r.one(), scale = r.one();
      r.one();  // the programming time (decode only)
      m.coeff = r.counted();
      const double t_key = r.one();
      m.coeff_read = r.counted();
      TORCH_CHECK(!m.drift || (t_key == t && !m.coeff_read.empty()),
                  "analog::device_chip: Wan2022 parameters encode no row for t = ", t);
      m.prog_factor = static_cast<float>(m.g_norm / ref * scale);
      break;
    }
    case kCmo: {
      m.g_min = r.one();
      m.g_max = r.one();
      r.one();  // the acceptance range (decode only)
      m.prog_factor = r.one();
      const double drift = r.one(), read_scale = r.one(), mean = r.one(), s0 = r.one(),
                   s1 = r.one(), k = r.one(), t_read = r.one();
      m.coeff = r.counted();
      if (m.drift) {
        const double ln_t = std::log(t);
        m.shift = static_cast<float>(mean * ln_t * drift);
        m.relax_std = static_cast<float>((s0 * ln_t + s1) * drift);
        m.read_factor = static_cast<float>(k * read_scale) * log_time_factor(t, t_read) * kLog10e;
      }
      break;
    }
    default:
      TORCH_CHECK(false, "analog::device_chip: unknown model kind ", kind);
  }
  TORCH_CHECK(!m.coeff.empty(), "analog::device_chip: empty programming polynomial");
  r.done();
  return m;
}

struct Converter {
  int kind = 0;
  float g_min = 0.0f, g_max = 0.0f;
  std::vector<float> f;           // pair significances
  std::vector<float> lower;       // NPair: u-level where pair k starts filling
  double span_total = 0.0;        // the conductance (uS) max|W| maps to
  int levels = 0;                 // CustomPair: table
  std::vector<float> rows;        // [device][level]
  int devices() const {
    return kind == kSingleDevice ? 1 : 2 * static_cast<int>(f.size());
  }
};

inline Converter parse_converter(int64_t kind, c10::ArrayRef<double> params) {
  Converter c;
  c.kind = static_cast<int>(kind);
  Reader r{params, 0, "converter"};
  c.g_min = r.one();
  c.g_max = r.one();
  const double span = static_cast<double>(c.g_max) - c.g_min;
  switch (kind) {
    case kSinglePair:
    case kSingleDevice:
      c.f = {1.0f};
      c.span_total = span;
      break;
    case kNPair: {
      c.f = r.take(static_cast<int64_t>(params.size()) - 2);
      double lower = 0.0;
      for (float fk : c.f) {
        c.lower.push_back(static_cast<float>(lower));
        lower += fk * span;
      }
      c.span_total = lower;
      break;
    }
    case kCustomPair: {
      const int64_t pairs = static_cast<int64_t>(r.one());
      c.levels = static_cast<int>(r.one());
      TORCH_CHECK(c.levels >= 2, "analog::device_chip: CustomPair needs 2 levels");
      c.f = r.take(pairs);
      c.rows = r.take(2 * pairs * c.levels);
      // max|sum_k f_k (G+_k - G-_k)| over the levels
      for (int l = 0; l < c.levels; ++l) {
        double w = 0.0;
        for (int64_t k = 0; k < pairs; ++k)
          w += c.f[k] * (static_cast<double>(c.rows[(2 * k) * c.levels + l]) -
                         c.rows[(2 * k + 1) * c.levels + l]);
        c.span_total = std::max(c.span_total, std::fabs(w));
      }
      break;
    }
    default:
      TORCH_CHECK(false, "analog::device_chip: unknown converter kind ", kind);
  }
  TORCH_CHECK(!c.f.empty() && c.devices() <= 64, "analog::device_chip: 1 to 32 pairs");
  r.done();
  return c;
}

}  // namespace devchip
}  // namespace analog
