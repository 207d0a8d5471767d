# The super-block GEMV's device source (kernels/cuda/kern_gemv_sb.cuh) run on the host by
# a SIMT emulator (tests/unit/kern_cuda_gemv_simt.cc): a C++ program, built where a C++
# compiler is present.  No GPU, no CUDA toolkit needed.
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  find_package(Threads REQUIRED)
  add_executable(kern_cuda_gemv_simt ${CMAKE_CURRENT_SOURCE_DIR}/unit/kern_cuda_gemv_simt.cc)
  target_include_directories(kern_cuda_gemv_simt PRIVATE ${CMAKE_SOURCE_DIR})
  set_target_properties(kern_cuda_gemv_simt PROPERTIES CXX_STANDARD 17 CXX_EXTENSIONS ON)
  target_compile_options(kern_cuda_gemv_simt PRIVATE -Wno-unknown-pragmas)
  target_link_libraries(kern_cuda_gemv_simt PRIVATE Threads::Threads)
  add_test(NAME unit.kern_cuda_gemv_simt COMMAND kern_cuda_gemv_simt)
  set_tests_properties(unit.kern_cuda_gemv_simt PROPERTIES TIMEOUT 300)
endif()
