/* A numeric reflowpy WASM plugin in C: for a list of numbers on port "in", send
 * {"sum": s, "mean": m, "n": n} on "out" and count messages in the node's state.
 * Build: clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic \
 *        -I reflowpy/script/include examples/script/stats_plugin.c -o stats_plugin.wasm */
#include "reflowpy_plugin.h"

int rf_process(rf_reader *in, rf_writer *out) {
    int64_t ports = rf_read_map(in);
    double sum = 0; int64_t n = 0;
    for (int64_t i = 0; i < ports; i++) {
        size_t len; const char *port = rf_read_str(in, &len);
        if (in->error) return 1;
        if (rf_str_eq(port, len, "in")) {
            int64_t items = rf_read_array(in);
            for (int64_t j = 0; j < items; j++) { sum += rf_read_number(in); n++; }
        } else {
            rf_skip(in);
        }
    }
    if (in->error) { rf_log(RF_ERROR, "expected a list of numbers on port in"); return 1; }
    rf_write_map(out, 1);
    rf_write_str(out, "out");
    rf_write_map(out, 3);
    rf_write_str(out, "sum"); rf_write_double(out, sum);
    rf_write_str(out, "mean"); rf_write_double(out, n ? sum / (double)n : 0.0);
    rf_write_str(out, "n"); rf_write_int(out, n);
    return 0;
}
