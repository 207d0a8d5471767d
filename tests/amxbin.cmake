# AMX binaries for `probe --binary`'s AMX checks, assembled at build time from
# tests/fixtures/amxbin (GNU as knows the AMX mnemonics; nothing here needs AMX to build,
# and the fixtures are never run).  The tests read them from <build>/tests/amxbin.
set(ADG_AMXBIN_SRC ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/amxbin)
set(ADG_AMXBIN_DIR ${CMAKE_BINARY_DIR}/tests/amxbin)
file(MAKE_DIRECTORY ${ADG_AMXBIN_DIR})
set(ADG_AMXBIN_OUTPUTS "")
foreach(name good bad bad_rodata undecided noamx)
  add_custom_command(OUTPUT ${ADG_AMXBIN_DIR}/${name}
                     COMMAND ${CMAKE_C_COMPILER} -nostdlib -static -o ${ADG_AMXBIN_DIR}/${name}
                             ${ADG_AMXBIN_SRC}/${name}.S
                     DEPENDS ${ADG_AMXBIN_SRC}/${name}.S COMMENT "AMX fixture ${name}" VERBATIM)
  list(APPEND ADG_AMXBIN_OUTPUTS ${ADG_AMXBIN_DIR}/${name})
endforeach()
# A relocatable object (sections at address 0, symbols relative to them).
add_custom_command(OUTPUT ${ADG_AMXBIN_DIR}/bad.o
                   COMMAND ${CMAKE_C_COMPILER} -c -o ${ADG_AMXBIN_DIR}/bad.o ${ADG_AMXBIN_SRC}/bad.S
                   DEPENDS ${ADG_AMXBIN_SRC}/bad.S COMMENT "AMX fixture bad.o" VERBATIM)
list(APPEND ADG_AMXBIN_OUTPUTS ${ADG_AMXBIN_DIR}/bad.o)
# What this machine's C compiler makes of _tile_loadconfig (GCC 12 drops the stores).
include(CheckCCompilerFlag)
check_c_compiler_flag(-mamx-tile ADG_CC_HAS_AMX_TILE)
if(ADG_CC_HAS_AMX_TILE)
  add_custom_command(OUTPUT ${ADG_AMXBIN_DIR}/tileconfig.o
                     COMMAND ${CMAKE_C_COMPILER} -O2 -mamx-tile -c -o ${ADG_AMXBIN_DIR}/tileconfig.o
                             ${ADG_AMXBIN_SRC}/tileconfig.c
                     DEPENDS ${ADG_AMXBIN_SRC}/tileconfig.c COMMENT "AMX fixture tileconfig.o" VERBATIM)
  list(APPEND ADG_AMXBIN_OUTPUTS ${ADG_AMXBIN_DIR}/tileconfig.o)
endif()
add_custom_target(adg_amxbin_fixtures ALL DEPENDS ${ADG_AMXBIN_OUTPUTS})
if(TARGET test_probe_binary_amx)
  add_dependencies(test_probe_binary_amx adg_amxbin_fixtures)
endif()
# Which compiler built tileconfig.o decides what the test expects of it.
file(WRITE ${ADG_AMXBIN_DIR}/compiler.txt "${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}\n")
