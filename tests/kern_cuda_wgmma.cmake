# The wgmma prompt GEMM's device source (kernels/cuda/kern_gemm_wgmma.cuh) run on the host
# by the SIMT emulator with wgmma's shared-memory descriptors decoded as the PTX ISA states
# (tests/unit/kern_cuda_wgmma_simt.cc, built on kern_cuda_gemm_simt.cc).  No GPU, no CUDA
# toolkit needed; built where a C++ compiler is present.
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  find_package(Threads REQUIRED)
  add_executable(kern_cuda_wgmma_simt ${CMAKE_CURRENT_SOURCE_DIR}/unit/kern_cuda_wgmma_simt.cc)
  target_include_directories(kern_cuda_wgmma_simt PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/unit)
  set_target_properties(kern_cuda_wgmma_simt PROPERTIES CXX_STANDARD 17 CXX_EXTENSIONS ON)
  target_compile_options(kern_cuda_wgmma_simt PRIVATE -Wno-unknown-pragmas -ffp-contract=off)
  target_link_libraries(kern_cuda_wgmma_simt PRIVATE Threads::Threads)
  add_test(NAME unit.kern_cuda_wgmma_simt COMMAND kern_cuda_wgmma_simt)
  set_tests_properties(unit.kern_cuda_wgmma_simt PROPERTIES TIMEOUT 300)
endif()
