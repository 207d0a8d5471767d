# A stand-in libnvidia-ml (tests/fixtures/nvml/fake_nvml.c) answering from a script
# ($AMXDIAG_FAKE_NVML): the nvml collector, the probe's NVML use and top's GPU panel are
# tested through it on machines without an NVIDIA driver (AMXDIAG_LIBNVML points at it).
# Two builds: the current entry points, and one with only the v1 process list.
add_library(fake_nvml SHARED ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/nvml/fake_nvml.c)
add_library(fake_nvml_v1 SHARED ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/nvml/fake_nvml.c)
target_compile_definitions(fake_nvml_v1 PRIVATE FAKE_NVML_V1_ONLY)
set_target_properties(fake_nvml fake_nvml_v1 PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
                      C_VISIBILITY_PRESET hidden)
