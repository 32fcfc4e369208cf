/* Minimal declarations of the ONNX Runtime C API used by ort_bench.c.
 *
 * The onnxruntime Python wheel ships libonnxruntime.so but no C headers, so this file declares
 * only what ort_bench.c calls. Layout source: microsoft/onnxruntime,
 * include/onnxruntime/core/session/onnxruntime_c_api.h (read at commit 0017800f, ORT_API_VERSION 13):
 * `struct OrtApi` is a table of function pointers in declaration order, and ONNX Runtime only
 * ever APPENDS to it (the header's ABI promise), so the indices below, all from API version 1,
 * hold for every later library; ort_bench requests version 1. Slots we do not call are kept as
 * `void *` padding with their upstream names in comments; the _Static_asserts pin the indices.
 */
#ifndef TOPNAS_ORT_C_API_MIN_H
#define TOPNAS_ORT_C_API_MIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct OrtEnv OrtEnv;
typedef struct OrtStatus OrtStatus;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtSession OrtSession;
typedef struct OrtValue OrtValue;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtAllocator OrtAllocator;  /* opaque here: only passed back to the library */

typedef enum { ORT_LOGGING_LEVEL_WARNING = 2, ORT_LOGGING_LEVEL_ERROR = 3 } OrtLoggingLevel;
typedef enum { ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1 } ONNXTensorElementDataType;
typedef enum { OrtDeviceAllocator = 0, OrtArenaAllocator = 1 } OrtAllocatorType;
typedef enum { OrtMemTypeDefault = 0 } OrtMemType;

typedef struct OrtApi {
  void *slots_0_1[2];                                                          /* 0 CreateStatus, 1 GetErrorCode */
  const char *(*GetErrorMessage)(const OrtStatus *status);                     /* 2 */
  OrtStatus *(*CreateEnv)(OrtLoggingLevel level, const char *logid, OrtEnv **out); /* 3 */
  void *slots_4_6[3];               /* 4 CreateEnvWithCustomLogger, 5 Enable-, 6 DisableTelemetryEvents */
  OrtStatus *(*CreateSession)(const OrtEnv *env, const char *model_path, const OrtSessionOptions *options,
                              OrtSession **out);                               /* 7 */
  void *slot_8;                                                                /* 8 CreateSessionFromArray */
  OrtStatus *(*Run)(OrtSession *session, const OrtRunOptions *run_options, const char *const *input_names,
                    const OrtValue *const *inputs, size_t input_len, const char *const *output_names,
                    size_t output_names_len, OrtValue **outputs);              /* 9 */
  OrtStatus *(*CreateSessionOptions)(OrtSessionOptions **options);             /* 10 */
  void *slots_11_23[13];  /* 11 SetOptimizedModelFilePath .. 23 SetSessionGraphOptimizationLevel */
  OrtStatus *(*SetIntraOpNumThreads)(OrtSessionOptions *options, int n);       /* 24 */
  OrtStatus *(*SetInterOpNumThreads)(OrtSessionOptions *options, int n);       /* 25 */
  void *slots_26_29[4];   /* 26 CreateCustomOpDomain .. 29 RegisterCustomOpsLibrary */
  OrtStatus *(*SessionGetInputCount)(const OrtSession *session, size_t *out);  /* 30 */
  OrtStatus *(*SessionGetOutputCount)(const OrtSession *session, size_t *out); /* 31 */
  void *slot_32;                                                 /* 32 SessionGetOverridableInitializerCount */
  OrtStatus *(*SessionGetInputTypeInfo)(const OrtSession *session, size_t index, OrtTypeInfo **out); /* 33 */
  void *slots_34_35[2];   /* 34 SessionGetOutputTypeInfo, 35 SessionGetOverridableInitializerTypeInfo */
  OrtStatus *(*SessionGetInputName)(const OrtSession *session, size_t index, OrtAllocator *allocator,
                                    char **value);                             /* 36 */
  OrtStatus *(*SessionGetOutputName)(const OrtSession *session, size_t index, OrtAllocator *allocator,
                                     char **value);                            /* 37 */
  void *slots_38_48[11];  /* 38 SessionGetOverridableInitializerName .. 48 CreateTensorAsOrtValue */
  OrtStatus *(*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo *info, void *data, size_t data_len,
                                               const int64_t *shape, size_t shape_len,
                                               ONNXTensorElementDataType type, OrtValue **out); /* 49 */
  void *slots_50_54[5];   /* 50 IsTensor .. 54 GetStringTensorContent */
  OrtStatus *(*CastTypeInfoToTensorInfo)(const OrtTypeInfo *type_info,
                                         const OrtTensorTypeAndShapeInfo **out); /* 55 */
  void *slots_56_59[4];   /* 56 GetOnnxTypeFromTypeInfo .. 59 SetDimensions */
  OrtStatus *(*GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info,
                                     ONNXTensorElementDataType *out);          /* 60 */
  OrtStatus *(*GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out); /* 61 */
  OrtStatus *(*GetDimensions)(const OrtTensorTypeAndShapeInfo *info, int64_t *dims, size_t n); /* 62 */
  void *slots_63_68[6];   /* 63 GetSymbolicDimensions .. 68 CreateMemoryInfo */
  OrtStatus *(*CreateCpuMemoryInfo)(OrtAllocatorType type, OrtMemType mem_type, OrtMemoryInfo **out); /* 69 */
  void *slots_70_75[6];   /* 70 CompareMemoryInfo .. 75 AllocatorAlloc */
  OrtStatus *(*AllocatorFree)(OrtAllocator *allocator, void *p);               /* 76 */
  void *slot_77;                                                               /* 77 AllocatorGetInfo */
  OrtStatus *(*GetAllocatorWithDefaultOptions)(OrtAllocator **out);            /* 78 */
  void *slots_79_91[13];  /* 79 AddFreeDimensionOverride .. 91 KernelContext_GetOutput */
  void (*ReleaseEnv)(OrtEnv *p);                                               /* 92 */
  void (*ReleaseStatus)(OrtStatus *p);                                         /* 93 */
  void (*ReleaseMemoryInfo)(OrtMemoryInfo *p);                                 /* 94 */
  void (*ReleaseSession)(OrtSession *p);                                       /* 95 */
  void (*ReleaseValue)(OrtValue *p);                                           /* 96 */
  void *slot_97;                                                               /* 97 ReleaseRunOptions */
  void (*ReleaseTypeInfo)(OrtTypeInfo *p);                                     /* 98 */
  void *slot_99;                                                    /* 99 ReleaseTensorTypeAndShapeInfo */
  void (*ReleaseSessionOptions)(OrtSessionOptions *p);                         /* 100 */
} OrtApi;

#define ORT_SLOT(field) (offsetof(OrtApi, field) / sizeof(void *))
_Static_assert(ORT_SLOT(GetErrorMessage) == 2, "OrtApi layout");
_Static_assert(ORT_SLOT(CreateSession) == 7, "OrtApi layout");
_Static_assert(ORT_SLOT(Run) == 9, "OrtApi layout");
_Static_assert(ORT_SLOT(SetIntraOpNumThreads) == 24, "OrtApi layout");
_Static_assert(ORT_SLOT(SessionGetInputCount) == 30, "OrtApi layout");
_Static_assert(ORT_SLOT(SessionGetInputTypeInfo) == 33, "OrtApi layout");
_Static_assert(ORT_SLOT(SessionGetInputName) == 36, "OrtApi layout");
_Static_assert(ORT_SLOT(CreateTensorWithDataAsOrtValue) == 49, "OrtApi layout");
_Static_assert(ORT_SLOT(CastTypeInfoToTensorInfo) == 55, "OrtApi layout");
_Static_assert(ORT_SLOT(GetTensorElementType) == 60, "OrtApi layout");
_Static_assert(ORT_SLOT(CreateCpuMemoryInfo) == 69, "OrtApi layout");
_Static_assert(ORT_SLOT(AllocatorFree) == 76, "OrtApi layout");
_Static_assert(ORT_SLOT(GetAllocatorWithDefaultOptions) == 78, "OrtApi layout");
_Static_assert(ORT_SLOT(ReleaseEnv) == 92, "OrtApi layout");
_Static_assert(ORT_SLOT(ReleaseSessionOptions) == 100, "OrtApi layout");

typedef struct OrtApiBase {
  const OrtApi *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} OrtApiBase;

const OrtApiBase *OrtGetApiBase(void);

#endif /* TOPNAS_ORT_C_API_MIN_H */
