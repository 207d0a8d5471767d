/* Public surface of reports/. */
#ifndef REPORTS_H
#define REPORTS_H

int rep_report_cmd_main(int argc, char **argv);

#endif
