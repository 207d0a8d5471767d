# The export load test compares a workload's timing with and without a scrape storm:
# another test running beside it would make the comparison meaningless.
if(TEST integration.prom_load)
  set_tests_properties(integration.prom_load PROPERTIES RUN_SERIAL TRUE)
endif()
