/* ort_bench: a small ONNX Runtime latency benchmark, built on the host against the C library that
 * the onnxruntime wheel ships (see topnas/platform/latency/native/__init__.py).
 *
 * Why: the adb harness must be exercised with a real compiled benchmark, not a script that prints
 * what a test expects. ort_bench accepts the subset of onnxruntime_perf_test's command line that
 * the harness sends (-e cpu -m times -r RUNS -x INTRA -y INTER [-I] [-s] MODEL [RESULT_FILE]) and
 * prints its summary in onnxruntime_perf_test's format, so the same parser reads both tools.
 * Like onnxruntime_perf_test it runs ONE untimed warm-up ("First inference time cost") and then
 * RUNS timed runs. It also prints "ONNX Runtime version: X" (perf_test does not) so a measurement
 * row can record the library version actually loaded on the device.
 *
 * Exit status: 0 ok, 1 runtime error (message on stderr), 2 bad command line.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ort_c_api_min.h"

static const OrtApi *g_ort;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(OrtStatus *status, const char *what) {
  if (status != NULL) {
    fprintf(stderr, "ort_bench: %s failed: %s\n", what, g_ort->GetErrorMessage(status));
    g_ort->ReleaseStatus(status);
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double q) {
  size_t i = (size_t)((double)n * q);
  return sorted[i < n ? i : n - 1];
}

static int usage(const char *msg) {
  fprintf(stderr,
          "ort_bench: %s\nusage: ort_bench [-e cpu] [-m times] [-r runs] [-x intra_threads] "
          "[-y inter_threads] [-I] [-s] model.onnx [result_file]\n", msg);
  return 2;
}

int main(int argc, char **argv) {
  long runs = 1000, intra = 0, inter = 0;
  const char *model = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (a[0] == '-' && a[1] != '\0' && a[2] == '\0') {
      char opt = a[1];
      if (opt == 'I' || opt == 's' || opt == 'v') continue;  /* flags without a value */
      if (i + 1 >= argc) return usage("an option is missing its value");
      const char *val = argv[++i];
      char *end = NULL;
      switch (opt) {
        case 'e':
          if (strcmp(val, "cpu") != 0) return usage("only -e cpu is supported");
          break;
        case 'm':
          if (strcmp(val, "times") != 0) return usage("only -m times is supported");
          break;
        case 'r': runs = strtol(val, &end, 10); if (*end || runs < 1) return usage("-r needs an int >= 1"); break;
        case 'x': intra = strtol(val, &end, 10); if (*end || intra < 0) return usage("-x needs an int >= 0"); break;
        case 'y': inter = strtol(val, &end, 10); if (*end || inter < 0) return usage("-y needs an int >= 0"); break;
        default: return usage("unknown option");
      }
    } else if (model == NULL) {
      model = a;
    }  /* a second positional argument is perf_test's result file: ignored */
  }
  if (model == NULL) return usage("no model path given");

  const OrtApiBase *base = OrtGetApiBase();
  g_ort = base->GetApi(1);
  if (g_ort == NULL) {
    fprintf(stderr, "ort_bench: GetApi(1) returned NULL (library %s)\n", base->GetVersionString());
    return 1;
  }
  printf("ONNX Runtime version: %s\n", base->GetVersionString());

  OrtEnv *env = NULL;
  check(g_ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "ort_bench", &env), "CreateEnv");
  OrtSessionOptions *opts = NULL;
  check(g_ort->CreateSessionOptions(&opts), "CreateSessionOptions");
  if (intra > 0) {
    check(g_ort->SetIntraOpNumThreads(opts, (int)intra), "SetIntraOpNumThreads");
    printf("Setting intra_op_num_threads to %ld\n", intra);
  }
  if (inter > 0) {
    check(g_ort->SetInterOpNumThreads(opts, (int)inter), "SetInterOpNumThreads");
    printf("Setting inter_op_num_threads to %ld\n", inter);
  }

  double t0 = now_s();
  OrtSession *session = NULL;
  check(g_ort->CreateSession(env, model, opts, &session), "CreateSession");
  double session_s = now_s() - t0;

  OrtAllocator *alloc = NULL;
  check(g_ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocatorWithDefaultOptions");
  OrtMemoryInfo *mem = NULL;
  check(g_ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "CreateCpuMemoryInfo");

  size_t n_in = 0, n_out = 0;
  check(g_ort->SessionGetInputCount(session, &n_in), "SessionGetInputCount");
  check(g_ort->SessionGetOutputCount(session, &n_out), "SessionGetOutputCount");
  char **in_names = calloc(n_in, sizeof(char *));
  char **out_names = calloc(n_out, sizeof(char *));
  OrtValue **inputs = calloc(n_in, sizeof(OrtValue *));
  OrtValue **outputs = calloc(n_out, sizeof(OrtValue *));
  float **buffers = calloc(n_in, sizeof(float *));
  if ((n_in && (!in_names || !inputs || !buffers)) || (n_out && (!out_names || !outputs))) {
    fprintf(stderr, "ort_bench: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n_in; ++i) {
    check(g_ort->SessionGetInputName(session, i, alloc, &in_names[i]), "SessionGetInputName");
    OrtTypeInfo *ti = NULL;
    check(g_ort->SessionGetInputTypeInfo(session, i, &ti), "SessionGetInputTypeInfo");
    const OrtTensorTypeAndShapeInfo *tsi = NULL;
    check(g_ort->CastTypeInfoToTensorInfo(ti, &tsi), "CastTypeInfoToTensorInfo");
    if (tsi == NULL) {
      fprintf(stderr, "ort_bench: input '%s' is not a tensor\n", in_names[i]);
      return 1;
    }
    ONNXTensorElementDataType type;
    check(g_ort->GetTensorElementType(tsi, &type), "GetTensorElementType");
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
      fprintf(stderr, "ort_bench: input '%s' has element type %d; only float32 inputs are supported\n",
              in_names[i], (int)type);
      return 1;
    }
    size_t rank = 0;
    check(g_ort->GetDimensionsCount(tsi, &rank), "GetDimensionsCount");
    int64_t dims[16];
    if (rank > 16) {
      fprintf(stderr, "ort_bench: input '%s' has rank %zu > 16\n", in_names[i], rank);
      return 1;
    }
    check(g_ort->GetDimensions(tsi, dims, rank), "GetDimensions");
    size_t count = 1;
    for (size_t d = 0; d < rank; ++d) {
      if (dims[d] <= 0) dims[d] = 1;  /* free dimensions are treated as 1, like perf_test -I */
      count *= (size_t)dims[d];
    }
    g_ort->ReleaseTypeInfo(ti);
    buffers[i] = malloc(count * sizeof(float));
    if (!buffers[i]) {
      fprintf(stderr, "ort_bench: out of memory\n");
      return 1;
    }
    for (size_t k = 0; k < count; ++k) buffers[i][k] = (float)((k * 2654435761u) % 256) / 128.0f - 1.0f;
    check(g_ort->CreateTensorWithDataAsOrtValue(mem, buffers[i], count * sizeof(float), dims, rank,
                                                ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &inputs[i]),
          "CreateTensorWithDataAsOrtValue");
  }
  for (size_t i = 0; i < n_out; ++i)
    check(g_ort->SessionGetOutputName(session, i, alloc, &out_names[i]), "SessionGetOutputName");

  /* warm-up: one untimed-for-statistics run, reported like perf_test's "First inference" */
  double f0 = now_s();
  check(g_ort->Run(session, NULL, (const char *const *)in_names, (const OrtValue *const *)inputs, n_in,
                   (const char *const *)out_names, n_out, outputs), "Run");
  double first_ms = (now_s() - f0) * 1000.0;
  for (size_t i = 0; i < n_out; ++i) { g_ort->ReleaseValue(outputs[i]); outputs[i] = NULL; }

  double *times = malloc((size_t)runs * sizeof(double));
  if (!times) {
    fprintf(stderr, "ort_bench: out of memory\n");
    return 1;
  }
  double total = 0.0, loop0 = now_s();
  for (long r = 0; r < runs; ++r) {
    double s = now_s();
    check(g_ort->Run(session, NULL, (const char *const *)in_names, (const OrtValue *const *)inputs, n_in,
                     (const char *const *)out_names, n_out, outputs), "Run");
    times[r] = now_s() - s;
    total += times[r];
    for (size_t i = 0; i < n_out; ++i) { g_ort->ReleaseValue(outputs[i]); outputs[i] = NULL; }
  }
  double loop_s = now_s() - loop0;

  printf("Session creation time cost: %g s\n", session_s);
  printf("First inference time cost: %ld ms\n", (long)(first_ms + 0.5));
  printf("Total inference time cost: %g s\n", total);
  printf("Total inference requests: %ld\n", runs);
  printf("Average inference time cost total: %f ms\n", total / (double)runs * 1000.0);
  printf("Total inference run time: %g s\n", loop_s);
  printf("Number of inferences per second: %g\n", (double)runs / loop_s);
  printf("Runs:%ld\n", runs);
  qsort(times, (size_t)runs, sizeof(double), cmp_double);
  size_t n = (size_t)runs;
  printf("Min Latency: %g s\n", times[0]);
  printf("Max Latency: %g s\n", times[n - 1]);
  printf("P50 Latency: %g s\n", percentile(times, n, 0.50));
  printf("P90 Latency: %g s\n", percentile(times, n, 0.90));
  printf("P95 Latency: %g s\n", percentile(times, n, 0.95));
  printf("P99 Latency: %g s\n", percentile(times, n, 0.99));
  printf("P999 Latency: %g s\n", percentile(times, n, 0.999));
  fflush(stdout);

  for (size_t i = 0; i < n_in; ++i) {
    g_ort->ReleaseValue(inputs[i]);
    free(buffers[i]);
    check(g_ort->AllocatorFree(alloc, in_names[i]), "AllocatorFree");
  }
  for (size_t i = 0; i < n_out; ++i) check(g_ort->AllocatorFree(alloc, out_names[i]), "AllocatorFree");
  free(times); free(in_names); free(out_names); free(inputs); free(outputs); free(buffers);
  g_ort->ReleaseMemoryInfo(mem);
  g_ort->ReleaseSession(session);
  g_ort->ReleaseSessionOptions(opts);
  g_ort->ReleaseEnv(env);
  return 0;
}
