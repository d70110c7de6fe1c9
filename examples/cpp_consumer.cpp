// cpp_consumer: libdiffusion from C++. The header is plain C with extern "C" guards, so it is
// included as it is; errors come back as dm_status values with a message in dm_error.
//
//   cpp_consumer
//
// Prints the library's version (and checks it against the header's), a noise schedule's
// figures, statistics of a built-in data set, and the message of an error made on purpose.
#include <diffusion.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

// Owns a dm_schedule (RAII around dm_schedule_init / dm_schedule_free).
class Schedule {
public:
    explicit Schedule(dm_schedule_kind kind) {
        dm_schedule_config cfg;
        dm_schedule_config_default(&cfg);
        cfg.kind = kind;
        ok_ = dm_schedule_init(&s_, &cfg, &err_) == DM_OK;
    }
    ~Schedule() {
        if (ok_) dm_schedule_free(&s_);
    }
    Schedule(const Schedule &) = delete;
    Schedule &operator=(const Schedule &) = delete;
    bool ok() const { return ok_; }
    const char *error() const { return err_.msg; }
    const dm_schedule &get() const { return s_; }

private:
    dm_schedule s_{};
    dm_error err_{};
    bool ok_ = false;
};

}  // namespace

int main() {
    const std::string header = std::to_string(DM_VERSION_MAJOR) + "." +
                               std::to_string(DM_VERSION_MINOR) + "." +
                               std::to_string(DM_VERSION_PATCH);
    std::printf("libdiffusion %s (header %s)\n", dm_version(), header.c_str());
    if (header != dm_version()) {
        std::fprintf(stderr, "error: compiled against %s, running with %s\n", header.c_str(),
                     dm_version());
        return 1;
    }

    for (dm_schedule_kind kind : {DM_SCHEDULE_LINEAR, DM_SCHEDULE_COSINE}) {
        Schedule s(kind);
        if (!s.ok()) {
            std::fprintf(stderr, "error: %s\n", s.error());
            return 1;
        }
        const dm_schedule &sc = s.get();
        std::printf("%-6s schedule: T = %d, alpha_bar_1 = %.6f, alpha_bar_T = %.3g\n",
                    dm_schedule_kind_name(kind), sc.T, sc.alpha_bar[0], sc.alpha_bar[sc.T - 1]);
    }

    dm_error err{};
    dm_dataset data{};
    if (dm_toy2d_generate(&data, "8gaussians", 4096, 7, &err) != DM_OK) {
        std::fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    dm_normalizer nz{};
    const dm_status st = dm_normalizer_fit(&nz, &data, &err);
    if (st == DM_OK)
        std::printf("8gaussians: %lld points, %d classes, mean (%.3f, %.3f), std (%.3f, %.3f)\n",
                    static_cast<long long>(data.n), data.num_classes, nz.mean[0], nz.mean[1],
                    nz.std[0], nz.std[1]);
    dm_dataset_free(&data);
    if (st != DM_OK) {
        std::fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }

    // a mistake on purpose: an unknown data set is refused with a message, nothing is printed
    // by the library itself
    std::vector<std::string> names;
    for (const char *const *n = dm_toy2d_names; *n; n++) names.push_back(*n);
    dm_dataset none{};
    const dm_status bad = dm_toy2d_generate(&none, "no-such-set", 10, 0, &err);
    std::printf("asking for 'no-such-set' (the sets: %zu built in): %s: %s\n", names.size(),
                dm_status_name(bad), err.msg);
    return bad == DM_ERR_ARG ? 0 : 1;
}
